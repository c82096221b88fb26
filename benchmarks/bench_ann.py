"""Approximate retrieval: recall@10 and single-query speed of usearch and faiss vs exact search.

For each catalogue size, item and user factors come from ALS (implicit's CPU solver, 64
factors, the :class:`~recsys.models.als.ALSModel` defaults ``alpha=0.1``,
``regularization=0.01``) trained on a synthetic power-law purchase matrix with category
structure (:func:`power_law_matrix`), or with ``--source lowrank`` from a cheaper low-rank
generator (cluster centres + noise, norms scaled by popularity). Queries are 1,000 trained
user vectors.

Measured, all with one thread per search (BLAS and faiss), as a serving worker runs:

* recall@10 of each index against exact top-10 (all queries);
* single-query throughput (one query per call, queries/s, median of ``--runs`` runs,
  contenders interleaved so a noisy neighbour hits all alike); exact search times a subset
  of the queries (it is the slow one);
* build time (2 threads) and index size (the file each library writes, which is what the
  index holds in memory: vectors + graph links or lists; a usearch file is memory-mapped
  when served, so one copy serves every worker).

usearch HNSW (the default, ``kind = "auto"``) and faiss HNSW are built with the same ``m`` and
``ef_construction`` and searched with the same ``ef_search`` and ``exact_head`` values, in the
same run.

Targets (issue 7): at 10^6 items the default index (:class:`~recsys.retrieval.ann.AnnConfig`)
has recall@10 >= 0.98 and >= 5x the exact throughput.

Run: ``.venv/bin/python -m benchmarks.bench_ann [--smoke] [--items 1e5,1e6] [--source als]``
(``--nprobe ""`` skips IVF.)
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmarks.common import (
    base_parser,
    interleaved,
    machine,
    markdown_table,
    median,
    out_dir,
    write_report,
)


def power_law_matrix(n_items: int, seed: int = 0) -> sp.csr_matrix:
    """A ``users × items`` purchase matrix with popularity and taste structure.

    Items fall in ``n_items / 1000`` categories (at least 20); item popularity is Zipf
    (exponent 0.9) over a random order. Each user (``n_items / 4`` of them, lognormal
    activity, median 12 purchases) has two favourite categories: three purchases in four come
    from them, the rest from the whole shop, each item drawn by popularity within its
    category. Weight 10 per purchase, as the default interaction config gives.
    """
    rng = np.random.default_rng(seed)
    n_users = max(n_items // 4, 50)
    n_cat = max(n_items // 1000, 20)
    category = rng.integers(0, n_cat, n_items)
    popularity = 1.0 / (rng.permutation(n_items) + 1.0) ** 0.9
    order = np.argsort(category, kind="stable")  # items grouped by category
    cum = np.cumsum(popularity[order])
    bounds = np.searchsorted(category[order], np.arange(n_cat + 1))
    start = np.concatenate([[0.0], cum])[bounds[:-1]]
    mass = np.concatenate([[0.0], cum])[bounds[1:]] - start
    counts = np.maximum(1, rng.lognormal(np.log(12), 0.8, n_users).astype(np.int64))
    user = np.repeat(np.arange(n_users), counts)
    favourites = rng.choice(n_cat, size=(n_users, 2), p=mass / mass.sum())
    pick = rng.integers(0, 2, user.size)
    cat = favourites[user, pick]
    anywhere = rng.random(user.size) >= 0.75
    cat[anywhere] = rng.choice(n_cat, size=int(anywhere.sum()), p=mass / mass.sum())
    u = start[cat] + rng.random(user.size) * mass[cat]
    pos = np.minimum(np.searchsorted(cum, u, side="right"), n_items - 1)
    item = order[pos]
    m = sp.csr_matrix(
        (np.full(user.size, 10.0, dtype=np.float32), (user, item)), shape=(n_users, n_items)
    )
    m.sum_duplicates()
    return m


def als_factors(
    n_items: int, factors: int, seed: int = 0, iterations: int = 10
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Item and user factors of ALS trained on :func:`power_law_matrix` (2 threads)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    matrix = power_law_matrix(n_items, seed)
    made = time.perf_counter() - start
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=0.01,
            alpha=0.1,
            iterations=iterations,
            random_state=seed,
            num_threads=2,
        )
        start = time.perf_counter()
        model.fit(matrix, show_progress=False)
    info = {
        "source": "ALS on synthetic power-law matrix",
        "users": matrix.shape[0],
        "nnz": int(matrix.nnz),
        "items_with_events": int((np.diff(matrix.tocsc().indptr) > 0).sum()),
        "matrix_s": made,
        "als_s": time.perf_counter() - start,
        "als_iterations": iterations,
    }
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    return items, users, info


def lowrank_factors(
    n_items: int, factors: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Cluster centres + noise, item norms growing with a Zipf popularity (no training)."""
    rng = np.random.default_rng(seed)
    n_clusters = max(n_items // 1000, 20)
    centres = rng.normal(size=(n_clusters, factors)).astype(np.float32)
    items = centres[rng.integers(0, n_clusters, n_items)] + 0.5 * rng.normal(
        size=(n_items, factors)
    ).astype(np.float32)
    popularity = 1.0 / (rng.permutation(n_items) + 1.0) ** 0.9
    items *= (1.0 + np.log1p(popularity * n_items)).astype(np.float32)[:, None] / 10
    users = centres[rng.integers(0, n_clusters, 5000)] + 0.5 * rng.normal(
        size=(5000, factors)
    ).astype(np.float32)
    info = {"source": "low-rank clusters + popularity norms (random, not trained)"}
    return np.ascontiguousarray(items), np.ascontiguousarray(users), info


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the exact top-k found (per query, then averaged)."""
    hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits) / truth.shape[1])


def bench_size(
    n_items: int,
    *,
    factors: int,
    source: str,
    n_queries: int,
    runs: int,
    exact_queries: int,
    ef_values: Sequence[int],
    nprobe_values: Sequence[int],
    head_values: Sequence[int],
    tmp: Path,
) -> dict[str, Any]:
    """Every measurement for one catalogue size."""
    import faiss

    from recsys.retrieval import (
        AnnConfig,
        ExactIndex,
        FaissIndex,
        ItemIndex,
        UsearchIndex,
        save_index,
    )

    if source == "als":
        items, users, info = als_factors(n_items, factors)
    else:
        items, users, info = lowrank_factors(n_items, factors)
    rng = np.random.default_rng(1)
    queries = users[rng.choice(users.shape[0], min(n_queries, users.shape[0]), replace=False)]
    k = 10
    default = AnnConfig()

    exact = ExactIndex(items, threads=2)
    truth, _ = exact.search(queries, k)
    exact.threads = 1

    start = time.perf_counter()
    hnsw = FaissIndex.hnsw(
        items,
        m=default.m,
        ef_construction=default.ef_construction,
        ef_search=default.ef_search,
        build_threads=2,
    )
    hnsw_build = time.perf_counter() - start
    start = time.perf_counter()
    graph = UsearchIndex.hnsw(
        items,
        m=default.m,
        ef_construction=default.ef_construction,
        ef_search=default.ef_search,
        build_threads=2,
    )
    usearch_build = time.perf_counter() - start
    sizes = {
        "exact": items.nbytes,
        "usearch": save_index(graph, tmp / f"usearch{n_items}").stat().st_size,
        "hnsw": save_index(hnsw, tmp / f"hnsw{n_items}").stat().st_size,
    }
    ivf = None
    ivf_build = 0.0
    if nprobe_values:
        start = time.perf_counter()
        ivf = FaissIndex.ivf(items, nlist=default.nlist, nprobe=default.nprobe, build_threads=2)
        ivf_build = time.perf_counter() - start
        sizes["ivf"] = save_index(ivf, tmp / f"ivf{n_items}").stat().st_size
    faiss.omp_set_num_threads(1)

    def single(index: Any, qs: np.ndarray) -> Any:
        def run() -> None:
            for q in qs:
                index.search(q[None, :], k)

        return run

    settings: list[tuple[str, str, ItemIndex, dict[str, int]]] = []
    for head in head_values:
        for ef in ef_values:
            params = {"ef_search": ef, "exact_head": head}
            settings.append((_hnsw_name(ef, head, "usearch"), "usearch", graph, params))
            settings.append((_hnsw_name(ef, head), "hnsw", hnsw, params))
    if ivf is not None:
        for nprobe in nprobe_values:
            settings.append((f"ivf nprobe={nprobe}", "ivf", ivf, {"nprobe": nprobe}))

    exact_q = queries[:exact_queries]
    # per setting: recall on all queries, then timing interleaved with exact
    results: dict[str, dict[str, Any]] = {}
    for name, kind, index, params in settings:
        index.set_search_params(**params)  # type: ignore[attr-defined]
        found, _ = index.search(queries, k)
        rec = recall_at(found, truth)
        times = interleaved({"exact": single(exact, exact_q), name: single(index, queries)}, runs)
        qps = len(queries) / median(times[name])
        exact_qps = len(exact_q) / median(times["exact"])
        results[name] = {
            "kind": kind,
            **params,
            "recall_at_10": rec,
            "qps": qps,
            "exact_qps_same_run": exact_qps,
            "speedup": qps / exact_qps,
        }
    hnsw.set_search_params(ef_search=default.ef_search, exact_head=default.exact_head)
    graph.set_search_params(ef_search=default.ef_search, exact_head=default.exact_head)
    if ivf is not None:
        ivf.set_search_params(nprobe=default.nprobe)
    default_name = _hnsw_name(default.ef_search, default.exact_head, "usearch")
    faiss_name = _hnsw_name(default.ef_search, default.exact_head)
    return {
        "n_items": n_items,
        "factors": factors,
        "queries": len(queries),
        "exact_timed_queries": len(exact_q),
        "runs": runs,
        "data": info,
        "build_s": {"usearch": usearch_build, "hnsw": hnsw_build, "ivf": ivf_build},
        "index_bytes": sizes,
        "usearch_params": graph.params,
        "hnsw_params": hnsw.params,
        "ivf_params": ivf.params if ivf is not None else None,
        "results": results,
        "default": default_name if default_name in results else None,
        "faiss_default": faiss_name if faiss_name in results else None,
    }


def _hnsw_name(ef: int, head: int, library: str = "hnsw") -> str:
    return f"{library} ef_search={ef}" + (f" exact_head={head:,}" if head else "")


def report(all_sizes: list[dict[str, Any]], command: str) -> str:
    """The Markdown section for RESULTS.md."""
    lines = [
        "## Approximate retrieval",
        "",
        f"Command: `{command}` · machine: {machine()} · 1-min load average when written: "
        f"{os.getloadavg()[0]:.2f}",
        "",
    ]
    for size in all_sizes:
        n = size["n_items"]
        data = size["data"]
        lines += [
            f"### {n:,} items × {size['factors']} factors",
            "",
            f"Factors: {data['source']}"
            + (
                f" ({data['users']:,} users, {data['nnz']:,} interactions, "
                f"{data['items_with_events']:,} items with events; ALS "
                f"{data['als_iterations']} iterations in {data['als_s']:.0f} s)"
                if "nnz" in data
                else ""
            )
            + f". {size['queries']:,} queries (user vectors); exact timed on "
            f"{size['exact_timed_queries']:,}; median of {size['runs']} runs; one thread.",
            "",
            f"Build (2 threads): usearch {size['build_s']['usearch']:.1f} s "
            f"({size['usearch_params']}), faiss HNSW {size['build_s']['hnsw']:.1f} s "
            f"({size['hnsw_params']})"
            + (
                f", IVF {size['build_s']['ivf']:.1f} s ({size['ivf_params']})"
                if size["ivf_params"]
                else ""
            )
            + ". Index size: exact "
            f"{size['index_bytes']['exact'] / 2**20:.0f} MiB (the factors), usearch "
            f"{size['index_bytes']['usearch'] / 2**20:.0f} MiB, faiss HNSW "
            f"{size['index_bytes']['hnsw'] / 2**20:.0f} MiB"
            + (
                f", IVF {size['index_bytes']['ivf'] / 2**20:.0f} MiB."
                if "ivf" in size["index_bytes"]
                else "."
            ),
            "",
        ]
        rows = [
            [
                name,
                r["recall_at_10"],
                r["qps"],
                r["exact_qps_same_run"],
                r["speedup"],
            ]
            for name, r in size["results"].items()
        ]
        lines.append(
            markdown_table(
                ["index", "recall@10", "queries/s", "exact queries/s (same run)", "speed-up"],
                rows,
            )
        )
        lines.append("")
        if size["default"] is not None:
            d = size["results"][size["default"]]
            ok_recall = d["recall_at_10"] >= 0.98
            ok_speed = d["speedup"] >= 5
            if size.get("faiss_default") is not None:
                f = size["results"][size["faiss_default"]]
                lines.append(
                    f"Same settings, faiss HNSW (the previous default): recall@10 "
                    f"{f['recall_at_10']:.4f}, {f['speedup']:.1f}x exact; usearch/faiss "
                    f"throughput {d['qps'] / f['qps']:.2f}."
                )
                lines.append("")
            lines.append(
                f"Default ({size['default']}, M={size['usearch_params'].get('m')}, "
                f"ef_construction={size['usearch_params'].get('ef_construction')}): recall@10 "
                f"{d['recall_at_10']:.4f} ({'meets' if ok_recall else 'MISSES'} >= 0.98), "
                f"{d['speedup']:.1f}x exact throughput "
                f"({'meets' if ok_speed else 'MISSES'} >= 5x)."
            )
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; write ``ann.md`` / ``ann.json`` to the output folder."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--items", default="1e5,1e6", help="comma-separated catalogue sizes")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--source", choices=["als", "lowrank"], default="als")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--exact-queries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ef", default="64,128,256,512", help="HNSW ef_search values")
    parser.add_argument("--nprobe", default="32,64,128,256", help="IVF nprobe values")
    parser.add_argument(
        "--head",
        default=None,
        help="HNSW exact_head values, each tried with every ef_search "
        "(default: 0 and AnnConfig's default when that is not 0)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.items, args.factors, args.source = "5000", 16, "lowrank"
        args.queries, args.exact_queries, args.runs = 100, 50, 2
        args.ef, args.nprobe, args.head = "128", "32", "0,500"
    sizes = [int(float(s)) for s in args.items.split(",")]
    from recsys.retrieval.ann import AnnConfig

    head_text = args.head if args.head is not None else f"0,{AnnConfig().exact_head}"
    heads = list(dict.fromkeys(int(float(v)) for v in head_text.split(",")))
    command = "python -m benchmarks.bench_ann " + " ".join(argv if argv is not None else [])
    out = out_dir(args)
    measured = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            print(f"-- {n:,} items", flush=True)
            measured.append(
                bench_size(
                    n,
                    factors=args.factors,
                    source=args.source,
                    n_queries=args.queries,
                    runs=args.runs,
                    exact_queries=args.exact_queries,
                    ef_values=[int(v) for v in args.ef.split(",")],
                    nprobe_values=[int(v) for v in args.nprobe.split(",") if v],
                    head_values=heads,
                    tmp=Path(tmp),
                )
            )
    write_report(out, "ann", report(measured, command.strip()), {"sizes": measured})
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
