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
    assert len(kernels) == len(set(kernels))
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
