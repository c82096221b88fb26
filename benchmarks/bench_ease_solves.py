"""How many EASE problems a ``recsys train`` run solves, of which sizes, and their time.

Wraps :func:`recsys.models.kernels._ease_solve` (every solve of EASEModel, the hybrid's
generators and the evaluation's baselines goes through it) and runs ``recsys train`` in this
process with the given arguments, then prints each solve's item count and seconds and the
total. ``RECSYS_HOME`` names the store, as for ``recsys train``.

Usage::

    RECSYS_HOME=/tmp/orw .venv/bin/python benchmarks/bench_ease_solves.py --no-promote
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.models import kernels


def main(argv: list[str]) -> int:
    real = kernels._ease_solve
    solves: list[tuple[int, float]] = []

    def timed(x: Any, regularization: float) -> Any:
        start = time.perf_counter()
        out = real(x, regularization)
        solves.append((int(x.shape[1]), time.perf_counter() - start))
        return out

    kernels._ease_solve = timed
    from recsys.cli import main as cli

    try:
        code = cli(["train", *argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    sizes = ", ".join(f"{n} items {s:.3f} s" for n, s in solves)
    print(f"ease solves: {len(solves)} ({sizes})", file=sys.stderr)
    print(f"ease solve time: {sum(s for _, s in solves):.2f} s", file=sys.stderr)
    return int(code or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
