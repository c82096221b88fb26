"""Training speed: the ALS wrapper against implicit itself, and ``recsys train`` on real data.

(a) :class:`recsys.models.als.ALSModel` fitted on a :class:`TrainingData` against a direct
``implicit.cpu.als.AlternatingLeastSquares`` fit on the same CSR matrix with the same
parameters and thread count, interleaved, median of 5; the ratio should be <= 1.1.
(b) The whole pipeline on UCI Online Retail: ingest into a temporary SQLite store, then
``recsys train`` with ``RECSYS_HOME`` in a temporary folder; per-stage timings from the
published manifest (issue 13's target: under 40 s). Skipped with a note when ../shared/data is
absent. (b) is also given in units of (a)'s direct implicit fit, measured in the same run: on
one CPU model and BLAS kernel that ratio evens out a busy or quiet day, but not a change of
CPU (8.7x on a Haswell-kernel EPYC, 12.9x on a SkylakeX-kernel one, the same code:
benchmarks/RESULTS.md, fiftieth session), so the report names both.

Run: ``.venv/bin/python -m benchmarks.bench_training [--smoke]``
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmarks.common import (
    SHARED_DATA,
    base_parser,
    env_vars,
    interleaved,
    markdown_table,
    median,
    out_dir,
    timed,
    write_report,
)
from recsys.environment import blas_kernels, cpu_model

ALS_PARAMS: dict[str, Any] = {
    "factors": 64,
    "regularization": 0.01,
    "alpha": 0.1,
    "iterations": 15,
    "random_state": 0,
}


def als_overhead(n_events: int, runs: int, threads: int) -> dict[str, Any]:
    """Median fit times of the wrapper and of implicit directly, and their ratio."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from recsys.data.interactions import InteractionConfig, build_training_data
    from recsys.data.synthetic import generate_shop
    from recsys.models.als import ALSModel

    shop = generate_shop(max(n_events // 30, 50), max(n_events // 100, 50), n_events, seed=7)
    data = build_training_data(shop.events, InteractionConfig())
    matrix = sp.csr_matrix(data.interactions, dtype=np.float32)

    def wrapper() -> None:
        ALSModel(**ALS_PARAMS, num_threads=threads).fit(data)

    def direct() -> None:
        # the same BLAS limit the wrapper sets: without it implicit warns and may run ~10x slower
        with threadpool_limits(1, "blas"):
            AlternatingLeastSquares(**ALS_PARAMS, num_threads=threads).fit(
                matrix, show_progress=False
            )

    wrapper()  # warm-up: imports, thread pools, page faults
    times = interleaved({"wrapper": wrapper, "direct": direct}, runs)
    w, d = median(times["wrapper"]), median(times["direct"])
    return {
        "events": n_events,
        "users": data.n_users,
        "items": data.n_items,
        "nnz": int(matrix.nnz),
        "threads": threads,
        "runs": runs,
        "wrapper_s": times["wrapper"],
        "direct_s": times["direct"],
        "wrapper_median_s": w,
        "direct_median_s": d,
        "ratio": w / d,
    }


def pipeline_online_retail(path: Path, config: Path | None = None) -> dict[str, Any]:
    """Ingest Online Retail and run ``recsys train``; wall times and the manifest's stages."""
    from recsys.cli import main as cli

    with tempfile.TemporaryDirectory() as home, env_vars(RECSYS_HOME=home):
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink):
            ingest_s, rc = timed(lambda: cli(["ingest", str(path), "--format", "online-retail"]))
            if rc != 0:
                raise RuntimeError(f"recsys ingest exited {rc}")
            argv = ["train"] + (["--config", str(config)] if config else [])
            train_s, rc = timed(lambda: cli(argv))
            if rc != 0:
                raise RuntimeError(f"recsys train exited {rc}:\n{sink.getvalue()}")
        manifests = sorted(Path(home, "models").rglob("manifest.json"))
        manifest = json.loads(manifests[-1].read_text(encoding="utf-8"))
    return {
        "ingest_s": ingest_s,
        "train_s": train_s,
        "stages": manifest.get("timings", {}),
        "fit": manifest.get("models", {}),
        "default_model": manifest.get("default_model"),
    }


def _smoke_config(folder: Path) -> Path:
    """A training config with only cheap models (the smoke run checks wiring, not speed)."""
    path = folder / "smoke.toml"
    path.write_text(
        'default_model = "popular"\nthreads = 1\n[models.popular]\nenabled = true\n'
        "[models.als]\nenabled = true\nparams = { factors = 8, iterations = 2 }\n",
        encoding="utf-8",
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; write ``training.md``/``.json`` to the output folder."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="ALS threads (both fits)")
    args = parser.parse_args(argv)
    out = out_dir(args)
    n_events, runs = (3_000, 2) if args.smoke else (1_000_000, 5)
    a = als_overhead(n_events, runs, args.threads)
    md = [
        "### (a) ALS wrapper vs implicit directly",
        "",
        f"{a['events']:,} synthetic events -> {a['users']:,} users x {a['items']:,} items, "
        f"{a['nnz']:,} non-zeros; factors 64, 15 iterations, {a['threads']} thread(s); "
        f"interleaved, median of {a['runs']}.",
        "",
        markdown_table(
            ["fit", "median s", "all runs s"],
            [
                ["ALSModel.fit(TrainingData)", a["wrapper_median_s"], _runs(a["wrapper_s"])],
                [
                    "implicit AlternatingLeastSquares.fit(csr)",
                    a["direct_median_s"],
                    _runs(a["direct_s"]),
                ],
            ],
        ),
        "",
        f"Ratio wrapper / direct: **{a['ratio']:.3f}** (target <= 1.1: "
        f"{'met' if a['ratio'] <= 1.1 else 'NOT met'}).",
        "",
        "### (b) `recsys train` on Online Retail",
        "",
    ]
    result: dict[str, Any] = {"als": a}
    data = SHARED_DATA / "online_retail.csv.gz"
    if not data.exists():
        md.append(f"Skipped: {data} is absent.")
    elif args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            sample = Path(__file__).resolve().parents[1] / "recsys/data/sample"
            small = next(iter(sorted(sample.glob("*.csv.gz"))), data)
            b = pipeline_online_retail(small, _smoke_config(Path(tmp)))
        md.append(f"Smoke: sample file {small.name}, train {b['train_s']:.1f} s.")
        result["pipeline"] = b
    else:
        b = pipeline_online_retail(data)
        result["pipeline"] = b
        rows: list[list[Any]] = [["ingest (not part of train)", b["ingest_s"]]]
        rows += [[f"train: {k}", float(v)] for k, v in b["stages"].items()]
        rows.append(["**train total (wall)**", b["train_s"]])
        md += [
            "Default config (`training/configs/default.toml`, default model "
            f"`{b['default_model']}`), one run; stage timings from the manifest.",
            "",
            markdown_table(["stage", "seconds"], rows),
            "",
            f"Issue 13's target < 40 s for `recsys train`: "
            f"{'met' if b['train_s'] < 40 else 'NOT met'} ({b['train_s']:.1f} s).",
            "",
            f"In units of the same run's direct implicit fit (a, {a['direct_median_s']:.2f} s): "
            f"**{b['train_s'] / a['direct_median_s']:.1f}x** on {cpu_model()}, BLAS "
            f"{', '.join(blas_kernels())} (comparable with runs on the same CPU and kernels "
            "only).",
        ]
        b["per_direct_fit"] = b["train_s"] / a["direct_median_s"]
    write_report(out, "training", "\n".join(md), result)
    return 0


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    raise SystemExit(main())
