"""Run the benchmarks: ``python -m benchmarks.run [--smoke] [--only NAME,...] [--out DIR]``.

Each benchmark module exposes ``main(argv)``; ours take ``--smoke`` and ``--out``. Other
scripts are called as they are written: a ``main(argv)`` gets ``[]``, a ``main()`` runs with
``sys.argv`` set to its name; scripts without a smoke mode only run in full mode. A failing
benchmark is reported and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

#: name -> (module, takes our --smoke/--out options)
BENCHMARKS: dict[str, tuple[str, bool]] = {
    "training": ("benchmarks.bench_training", True),
    "scale": ("benchmarks.bench_scale", True),
    "baskets": ("benchmarks.bench_baskets", True),
    "serving": ("benchmarks.bench_serving", True),
    "live": ("benchmarks.bench_live", True),
    "sessions": ("benchmarks.bench_sessions", True),
    "mixed": ("benchmarks.bench_mixed", True),
    "live_path": ("benchmarks.bench_live_path", True),
    "rolling": ("benchmarks.bench_rolling", False),
    "ann": ("benchmarks.bench_ann", True),
    "matrix": ("benchmarks.bench_matrix", False),
    "quality": ("benchmarks.bench_quality", False),
    "ingest": ("benchmarks.bench_ingest", False),
    "campaign": ("benchmarks.campaign_online_retail", False),
}


def run_one(name: str, *, smoke: bool, out: Path) -> str:
    """Run one benchmark; ``"ok"``, ``"skipped: ..."`` or raise."""
    module_name, ours = BENCHMARKS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return "skipped: module not present"
        raise
    main = getattr(module, "main", None)
    if main is None:
        return "skipped: no main()"
    if ours:
        argv = ["--out", str(out)] + (["--smoke"] if smoke else [])
        rc = main(argv)
    elif smoke:
        return "skipped: no smoke mode"
    elif inspect.signature(main).parameters:
        rc = main([])
    else:
        saved = sys.argv
        sys.argv = [module_name]
        try:
            rc = main()
        finally:
            sys.argv = saved
    if rc not in (0, None):
        raise RuntimeError(f"exited {rc}")
    return "ok"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks; print a summary; 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (< 60 s in all)")
    parser.add_argument("--only", default=None, help=f"comma-separated: {', '.join(BENCHMARKS)}")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: benchmarks/, or a temporary folder with --smoke)",
    )
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(unknown)}")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or (Path(tmp) if args.smoke else Path(__file__).resolve().parent)
        out.mkdir(parents=True, exist_ok=True)
        summary, failed = [], False
        for name in names:
            start = time.perf_counter()
            print(f"== {name}", flush=True)
            try:
                status = run_one(name, smoke=args.smoke, out=out)
            except Exception:  # one broken benchmark must not hide the others
                traceback.print_exc()
                status, failed = "FAILED", True
            summary.append(f"{name:10s} {status} ({time.perf_counter() - start:.1f} s)")
        print("\n".join(["== summary", *summary]), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
