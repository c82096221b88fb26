"""What a model's numbers depend on besides the code and the data.

Two machines that run the same code on the same events can still learn different models:
the libraries' versions differ, or the BLAS library picks other kernels for another CPU (a
Zen 4 gets OpenBLAS's AVX-512 "SkylakeX" kernels, a Zen 3 its AVX2 "Haswell" ones). The
kernels sum in another order, the rounding differs in the last bits, and the hybrid's trees,
which split on near ties, amplify it: on Ta-Feng the kernels alone moved the rolling-origin
means by 1.1-1.4 % on all items and 3-4 % on new items (benchmarks/RESULTS.md, thirty-fourth
session), as much as another seed does. A version's manifest
and every benchmark report say which environment produced them, so that two numbers are
compared only when they came from the same one.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

#: The distributions whose arithmetic a trained model depends on, and the manifest's key for
#: each (the import name).
NUMERIC_LIBRARIES = {
    "numpy": "numpy",
    "scipy": "scipy",
    "implicit": "implicit",
    "lightgbm": "lightgbm",
    "scikit-learn": "sklearn",
}


def library_versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Python's version and each numeric library's (``"not installed"`` where absent).

    Parameters
    ----------
    extra : dict of str to str, optional
        More distributions to report, distribution name to key.

    Returns
    -------
    dict of str to str
        ``{"python": ..., "numpy": ..., ...}``.
    """
    out = {"python": platform.python_version()}
    for dist, key in {**NUMERIC_LIBRARIES, **(extra or {})}.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "not installed"
    return out


def blas_kernels() -> list[str]:
    """The BLAS libraries numpy and scipy loaded, with the kernels each chose for this CPU.

    Returns
    -------
    list of str
        One ``"<library> <version> <kernels>"`` per distinct library, e.g.
        ``"openblas 0.3.30 SkylakeX"``; OpenBLAS's choice can be forced with
        ``OPENBLAS_CORETYPE`` (e.g. ``Haswell``) to reproduce another machine's numbers.
    """
    import numpy  # noqa: F401  (loads numpy's BLAS)
    import scipy.linalg  # noqa: F401  (loads scipy's, which implicit's ALS calls)
    from threadpoolctl import threadpool_info

    seen: list[str] = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        text = " ".join(
            str(part)
            for part in (info.get("internal_api"), info.get("version"), info.get("architecture"))
            if part
        )
        if text not in seen:
            seen.append(text)
    # sorted: threadpoolctl lists the libraries in the order they were loaded, which depends
    # on what the process imported first, not on the numerics
    return sorted(seen)


def cpu_model() -> str:
    """The CPU's model name, with its family and model numbers where Linux gives them.

    A virtual machine often names only the vendor ("AMD EPYC"); the numbers tell its
    generations apart (family 25 is Zen 3 at model 1, Zen 4 at model 17).
    """
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as lines:
            for line in lines:
                key, sep, value = line.partition(":")
                if not sep:
                    break  # the first processor's block ends at a blank line
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def platform_info() -> dict[str, Any]:
    """The machine a run's numbers came from: CPU, cores and BLAS kernels.

    Returns
    -------
    dict
        ``{"cpu": str, "cores": int, "blas": list of str}``.
    """
    return {"cpu": cpu_model(), "cores": os.cpu_count() or 1, "blas": blas_kernels()}


def numerics_differ(
    then: Mapping[str, Any], now: Mapping[str, Any], *, unrecorded: str | None = None
) -> list[str]:
    """What differs between the numerics two records were produced with.

    Only what changes a model's numbers is compared: the numeric libraries' versions
    (:data:`NUMERIC_LIBRARIES`) and the BLAS kernels. Another CPU with the same kernels, or
    another Python, gives the same numbers.

    Parameters
    ----------
    then, now : mapping
        Two records with ``"libraries"`` (as :func:`library_versions` gives) and
        ``"platform"`` (as :func:`platform_info` gives) entries: a version's manifest, a
        benchmark's ``--json`` report.
    unrecorded : str, optional
        What ``then`` is called in a line that says it recorded no libraries or no BLAS
        kernels (``"the baseline"``). Without it, what ``then`` did not record (a version
        older than these entries) is not compared and not mentioned.

    Returns
    -------
    list of str
        One line per difference, e.g. ``"lightgbm 4.7.0 -> 3.3.5"`` or
        ``"BLAS openblas 0.3.30 SkylakeX -> openblas 0.3.30 Haswell"``; empty when the
        numerics are the same.
    """
    out: list[str] = []
    old, new = then.get("libraries"), now.get("libraries") or {}
    if old is None:
        if unrecorded:
            out.append(f"{unrecorded} recorded no library versions")
    else:
        for key in NUMERIC_LIBRARIES.values():
            if key in old and key in new and old[key] != new[key]:
                out.append(f"{key} {old[key]} -> {new[key]}")
    old_blas = (then.get("platform") or {}).get("blas")
    new_blas = (now.get("platform") or {}).get("blas") or []
    if old_blas is None:
        if unrecorded:
            out.append(f"{unrecorded} recorded no BLAS kernels")
    elif sorted(old_blas) != sorted(new_blas):  # older records kept the order of loading
        out.append(f"BLAS {'; '.join(old_blas) or 'none'} -> {'; '.join(new_blas) or 'none'}")
    return out
