"""recsys.concurrency: work beside the caller's keeps its result, its order and its errors."""

from __future__ import annotations

import threading

import pytest

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
