"""The environment a version's numbers came from: versions, CPU and BLAS kernels."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from recsys.environment import (
    NUMERIC_LIBRARIES,
    blas_kernels,
    cpu_model,
    library_versions,
    numerics_differ,
    platform_info,
)


def test_library_versions_name_every_numeric_library_and_python() -> None:
    import lightgbm
    import numpy

    versions = library_versions({"no-such-distribution-here": "ghost"})
    assert set(versions) == {"python", *NUMERIC_LIBRARIES.values(), "ghost"}
    assert versions["numpy"] == numpy.__version__
    assert versions["lightgbm"] == lightgbm.__version__
    assert versions["ghost"] == "not installed"


def test_blas_kernels_name_the_library_and_its_kernels() -> None:
    kernels = blas_kernels()
    assert kernels, "numpy and scipy load a BLAS"
    assert len(kernels) == len(set(kernels)) and kernels == sorted(kernels)
    for entry in kernels:
        assert len(entry.split()) >= 2, entry  # library and version at least


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OPENBLAS_CORETYPE: OpenBLAS")
def test_forced_openblas_kernels_are_reported() -> None:
    """OPENBLAS_CORETYPE reproduces another CPU's kernels; the report must show the choice."""
    if not any(k.startswith("openblas") for k in blas_kernels()):
        pytest.skip("numpy and scipy do not use OpenBLAS here")
    code = "from recsys.environment import blas_kernels; print('|'.join(blas_kernels()))"
    env = {**os.environ, "OPENBLAS_CORETYPE": "Sandybridge"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out and all(entry.endswith("Sandybridge") for entry in out.split("|")), out


def test_platform_info_has_the_cpu_cores_and_kernels() -> None:
    info = platform_info()
    assert info["cpu"] == cpu_model() and info["cpu"]
    assert info["cores"] == (os.cpu_count() or 1)
    assert info["blas"] == blas_kernels()


def test_numerics_differ_names_libraries_and_kernels_but_not_the_cpu_or_python() -> None:
    then = {
        "libraries": {"python": "3.11.2", "numpy": "2.4.6", "lightgbm": "4.7.0"},
        "platform": {"cpu": "AMD EPYC (family 25, model 1)", "blas": ["openblas 0.3.30 Haswell"]},
    }
    now = {
        "libraries": {"python": "3.12.1", "numpy": "2.4.6", "lightgbm": "4.6.0"},
        "platform": {"cpu": "AMD EPYC (family 25, model 17)", "blas": ["openblas 0.3.30 SkylakeX"]},
    }
    assert numerics_differ(then, now) == [
        "lightgbm 4.7.0 -> 4.6.0",
        "BLAS openblas 0.3.30 Haswell -> openblas 0.3.30 SkylakeX",
    ]
    same = {**now, "libraries": {**now["libraries"], "python": "3.11.2"}}
    assert numerics_differ(same, now) == []
    assert numerics_differ({}, now) == []  # an older record: nothing to compare
    both = ["openblas 0.3.30 SkylakeX", "openblas 0.3.31.188.0 SkylakeX"]
    loaded = {"platform": {"blas": both}}  # the same kernels, loaded in another order
    assert numerics_differ(loaded, {"platform": {"blas": both[::-1]}}) == []
    assert numerics_differ({}, now, unrecorded="the baseline") == [
        "the baseline recorded no library versions",
        "the baseline recorded no BLAS kernels",
    ]
