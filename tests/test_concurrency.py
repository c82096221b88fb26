"""recsys.concurrency: work beside the caller's keeps its result, its order and its errors;
the OpenMP limit is applied and undone."""

from __future__ import annotations

import threading

import pytest

from recsys import concurrency
from recsys.concurrency import Behind, beside


def _where() -> str:
    return threading.current_thread().name


@pytest.mark.parametrize("enabled", [True, False])
def test_beside_returns_the_call_s_result_on_its_own_thread_when_enabled(enabled: bool) -> None:
    with beside(_where, enabled, name="t-beside") as result:
        caller = _where()
    assert result().startswith("t-beside") == enabled
    assert caller == threading.current_thread().name


def test_beside_raises_the_call_s_error() -> None:
    def fails() -> None:
        raise ValueError("beside")

    with pytest.raises(ValueError, match="beside"), beside(fails) as result:
        result()


@pytest.mark.parametrize("enabled", [True, False])
def test_behind_runs_every_call_in_order(enabled: bool) -> None:
    seen: list[tuple[int, str]] = []
    with Behind(enabled, name="t-behind") as behind:
        for i in range(20):
            behind.run(lambda i: seen.append((i, _where())), i)
    assert [i for i, _ in seen] == list(range(20))
    assert all(name.startswith("t-behind") == enabled for _, name in seen)


def test_behind_raises_an_error_of_the_last_call_on_leaving() -> None:
    def fails(_: int) -> None:
        raise KeyError("last")

    with pytest.raises(KeyError, match="last"), Behind(True) as behind:
        behind.run(fails, 0)


def test_openmp_limit_is_applied_and_restored_with_kept_libraries() -> None:
    """``openmp_threads`` keeps the OpenMP libraries it found (no lookup of every shared
    library per prediction) and still limits and restores them as ``threadpool_limits``
    does; an import makes it look them up again (it may load another OpenMP runtime)."""
    import sys

    import sklearn.ensemble  # noqa: F401 - loads scikit-learn's OpenMP runtime
    from threadpoolctl import threadpool_info

    def limits() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]

    before = limits()
    assert before, "scikit-learn's OpenMP runtime is loaded"
    for _ in range(2):  # the second from the kept libraries
        with concurrency.openmp_threads(1):
            assert limits() == [1] * len(before)
        assert limits() == before
    kept = concurrency._OPENMP
    assert kept is not None and kept[0] == len(sys.modules)
    with concurrency.openmp_threads(1):
        pass
    assert concurrency._OPENMP is kept  # nothing imported: the same libraries
    sys.modules["_recsys_test_marker"] = sys  # as an import would grow sys.modules
    try:
        with concurrency.openmp_threads(1):
            assert limits() == [1] * len(before)
        assert concurrency._OPENMP is not kept
    finally:
        del sys.modules["_recsys_test_marker"]
    assert limits() == before
