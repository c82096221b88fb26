"""Server memory with 1 and 2 workers: one shared copy of the approximate index (issue 16).

Publishes one model version per index kind through the real version format
(:func:`recsys.artifacts.write_version`, the registry's ``publish``), the same data for each:
``--items`` items, ``--users`` customers, ALS with *random* factors (``--factors``; training ALS
at 10^6 items takes too long here and memory does not depend on the values), a random history
of ``--events-per-user`` items per customer, and the index ``recsys train`` would build
(default ``[ann]`` graph parameters except ``ef_construction``, ``--ef-construction``: it sets
build time, not the index's size). No precomputed lists, so every request is answered live
through the index.

For each kind and ``--workers`` 1 and 2, starts ``recsys serve`` (real processes, uvicorn
workers spawned, so nothing is shared by fork), sends ``--requests`` recommendation requests
for distinct customers (each a fold-in and an index search; the exact head reads every item's
norm at load), then sums ``Pss`` of ``/proc/PID/smaps_rollup`` over the server's processes
(supervisor and workers). PSS divides each shared page among the processes that map it, so
the sum is what the server costs together. Also per worker: PSS by mapping (the index file,
the model's factors, other version files, anonymous memory, libraries) from
``/proc/PID/smaps``, to show what dominates.

PSS is read only once every worker has loaded the version: a uvicorn worker opens its socket
only after the app's start-up (which loads the version) has finished, so a worker that has
answered ``/healthz`` (which names its pid) has loaded it. The benchmark opens a new connection
per probe until every worker pid of the server has answered (``wait_for_workers``).

``--home DIR`` keeps the published shops (and the built index, which takes tens of minutes at
10^6 items) for the next run: a later run with the same ``--home`` and sizes serves the version
already there. Serving code of another tree can then be measured on the very same version by
putting that tree first on the servers' path: ``--server-path /tmp/tree`` (the version is
published by this tree's code; older servers read the files they know).

``--trained HOME`` measures instead the version promoted in a shop trained by ``recsys train``
(e.g. the ``--home`` of ``bench_mixed --model hybrid``: the hybrid with its offers context,
catalogue and live state as a shop serves them), ``--runs`` times; the requests are for the last
4,000 customers of its ``users.json``.

Target (issue 16): at 10^6 items, PSS with 2 workers <= 1.3x PSS with 1 worker.

Run: ``.venv/bin/python -m benchmarks.bench_memory [--smoke] [--items 1e6] [--kinds usearch,hnsw]
[--home DIR] [--server-path TREE] [--trained HOME --runs N]``
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmarks.bench_serving import free_port, rss_mib, stop
from benchmarks.common import base_parser, machine, markdown_table, out_dir, write_report

TARGET_RATIO = 1.3


def synthetic_version(
    home: Path,
    *,
    n_items: int,
    n_users: int,
    factors: int,
    events_per_user: int,
    kind: str,
    ef_construction: int,
    seed: int = 0,
    index_cache: Path | None = None,
) -> tuple[Path, list[str], dict[str, Any]]:
    """Publish and promote one version with random ALS factors and a ``kind`` index.

    ``index_cache``: a folder where the built index is kept (with its parameters) and taken
    from on a later call with the same sizes and seed, instead of building it again.

    Returns the version folder, the customer ids and build facts (seconds, file sizes).
    """
    from recsys.artifacts import index_base, write_version
    from recsys.data.vocab import Vocabulary
    from recsys.models.als import ALSModel
    from recsys.registry import Registry
    from recsys.retrieval.ann import AnnConfig, build_index, save_index

    rng = np.random.default_rng(seed)
    users = Vocabulary(f"c{u}" for u in range(n_users))
    items = Vocabulary(f"p{i}" for i in range(n_items))
    catalog = [
        {
            "item_id": f"p{i}",
            "title": f"product {i}",
            "category": f"cat{i % 500}",
            "price": round(1 + (i % 97) * 0.5, 2),
            "in_stock": True,
            "margin": None,
        }
        for i in range(n_items)
    ]
    # item norms grow with popularity, as ALS factors' do
    popularity = 1.0 / (rng.permutation(n_items) + 1.0) ** 0.9
    item_f = rng.normal(size=(n_items, factors)).astype(np.float32)
    item_f *= ((1.0 + np.log1p(popularity * n_items)) / 10).astype(np.float32)[:, None]
    user_f = rng.normal(size=(n_users, factors)).astype(np.float32)
    rows = np.repeat(np.arange(n_users), events_per_user)
    cols = rng.choice(n_items, size=rows.size, p=popularity / popularity.sum())
    history = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n_users, n_items)
    )
    history.sum_duplicates()
    model = ALSModel(factors=factors)
    model.user_factors_ = user_f
    model.item_factors_ = item_f
    model.train_ = history  # the rows it was "trained" on: known customers keep their vectors

    registry = Registry(home / "models")
    cached: Path | None = None
    if index_cache is not None:
        cached = index_cache / f"{kind}-{n_items}x{factors}-ef{ef_construction}-seed{seed}"
    start_s = time.perf_counter()
    if cached is not None and cached.with_suffix(".json").is_file():
        built_file = Path(cached.with_suffix(".json").read_text(encoding="utf-8").strip())
        meta = json.loads(built_file.with_suffix(".params").read_text(encoding="utf-8"))
        params, build_s = meta["params"], float(meta["build_s"])
    else:
        config = AnnConfig(kind=kind, ef_construction=ef_construction)  # type: ignore[arg-type]
        index = build_index(item_f, config=config)
        build_s = time.perf_counter() - start_s
        params = dict(index.params)  # type: ignore[attr-defined]
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            built_file = save_index(index, cached)
            meta = {"params": params, "build_s": build_s}
            built_file.with_suffix(".params").write_text(json.dumps(meta), encoding="utf-8")
            cached.with_suffix(".json").write_text(str(built_file), encoding="utf-8")
    with registry.publish() as staging:
        write_version(
            staging.path,
            users=users,
            items=items,
            catalog=catalog,
            history=history,
            purchases=history,
            models={"als": model},
        )
        base = index_base(staging.path, "als")
        base.parent.mkdir()
        if cached is not None:
            path = base.with_suffix(built_file.suffix)
            shutil.copyfile(built_file, path)
        else:
            path = save_index(index, base)
        staging.manifest.update(
            default_model="als",
            models={"als": {"model": "als"}},
            counts={"users": n_users, "items": n_items, "interactions": int(history.nnz)},
            ann={
                "als": {
                    "file": path.relative_to(staging.path).as_posix(),
                    "n_items": n_items,
                    "dim": factors,
                    "params": params,
                }
            },
        )
    version = staging.version
    registry.promote(version, reason="bench_memory", verify=False)
    folder = registry.path(version)
    sizes = {
        "index": (folder / path.relative_to(staging.path)).stat().st_size,
        "factors": sum(f.stat().st_size for f in (folder / "models").rglob("*.npz")),
        "version": sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()),
    }
    return folder, list(users.ids), {"build_s": build_s, "bytes": sizes}


def children(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def pss_by_mapping(pid: int, version: Path) -> dict[str, float]:
    """PSS of one process (MiB) by what is mapped: index, factors, other version files,
    anonymous memory (heap, Python objects, private copies), shared libraries, the rest."""
    groups: dict[str, float] = {}
    name = "other"
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            head = line.split()
            if not head:
                continue
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                path = head[5] if len(head) > 5 else ""
                if path.startswith(str(version)):
                    rel = Path(path).relative_to(version).as_posix()
                    name = (
                        "index file"
                        if rel.startswith("index/")
                        else "factors"
                        if rel.startswith("models/")
                        else "other version files"
                    )
                elif path == "" or path.startswith("["):
                    name = "anonymous"
                elif ".so" in path:
                    name = "libraries"
                else:
                    name = "other files"
            elif head[0] == "Pss:":
                groups[name] = groups.get(name, 0.0) + int(head[1]) / 1024
    return groups


def worker_pids(server_pid: int, workers: int) -> set[int]:
    """The uvicorn worker processes of a server: with one worker uvicorn serves in its own
    process; with more, the workers are the supervisor's children that run the app (not
    multiprocessing's resource tracker, which has no listening socket)."""
    if workers == 1:
        return {server_pid}
    out = set()
    for pid in children(server_pid)[1:]:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"resource_tracker" not in cmdline:
                out.add(pid)
    return out


def wait_for_workers(
    port: int, server: subprocess.Popen[bytes], workers: int, timeout_s: float
) -> dict[str, Any]:
    """Wait until every worker of the server has answered ``/healthz`` (with its pid).

    A uvicorn worker accepts connections only once the app's start-up has run, and the app
    loads the model version in its start-up, so a worker that answered has loaded it. Each
    probe is a new connection, so that the kernel can hand it to any worker.

    Returns
    -------
    dict
        ``workers`` (the pids that answered), ``probes`` and ``waited_s``.

    Raises
    ------
    RuntimeError
        The server exited, or not every worker answered within ``timeout_s`` (the pids that
        did are named).
    """
    start_s = time.monotonic()
    answered: set[int] = set()
    probes = 0
    while time.monotonic() - start_s < timeout_s:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} while loading")
        expected = worker_pids(server.pid, workers)
        if len(expected) == workers and expected <= answered:
            return {
                "workers": sorted(answered),
                "probes": probes,
                "waited_s": round(time.monotonic() - start_s, 2),
            }
        with contextlib.suppress(OSError, ValueError, KeyError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            answered.add(int(json.loads(conn.getresponse().read())["worker"]))
            conn.close()
        probes += 1
        time.sleep(0.05)
    raise RuntimeError(
        f"after {timeout_s:.0f} s only workers {sorted(answered)} of "
        f"{sorted(worker_pids(server.pid, workers))} had answered /healthz"
    )


def send_requests(port: int, users: Sequence[str], n: int) -> dict[str, Any]:
    """``n`` GETs of distinct customers' recommendations; counts and median latency."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times, bad = [], 0
    for user in users[:n]:
        t = time.perf_counter()
        conn.request("GET", f"/v1/users/{user}/recommendations?k=10")
        resp = conn.getresponse()
        resp.read()
        times.append(time.perf_counter() - t)
        bad += resp.status != 200
    conn.close()
    return {"requests": len(times), "non_200": bad, "median_ms": 1e3 * float(np.median(times))}


def measure_kind(
    kind: str,
    home: Path,
    users: list[str],
    folder: Path,
    n_requests: int,
    *,
    server_path: str | None = None,
    load_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """PSS of ``recsys serve`` with 1 and 2 workers on the promoted version in ``home``.

    ``server_path``: a source tree put first on the servers' ``PYTHONPATH`` (to measure its
    serving code on the same version)."""
    env = dict(os.environ, RECSYS_HOME=str(home), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    if server_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [server_path, env.get("PYTHONPATH")]))
    recsys_bin = str(Path(sys.executable).with_name("recsys"))
    out: dict[str, Any] = {}
    for workers in (1, 2):
        port = free_port()
        cmd = [recsys_bin, "serve", "--port", str(port), "--workers", str(workers)]
        log = home / f"serve-w{workers}.log"
        with log.open("wb") as err:
            # started in the tree too: a spawned worker's first path entry is its directory
            proc = subprocess.Popen(
                [*cmd, "--no-access-log"],
                env=env,
                cwd=server_path or None,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            try:
                loaded = wait_for_workers(port, proc, workers, load_timeout_s)
            except RuntimeError as exc:
                tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
                raise RuntimeError(f"{exc}; the server's log ends:\n{tail}") from None
            # several connections' worth of requests, so that every worker searches
            traffic = [send_requests(port, users[i::4], n_requests // 4) for i in range(4)]
            time.sleep(1.0)
            pids = children(proc.pid)
            out[f"w{workers}"] = {
                "loaded": loaded,
                "pss_mib": rss_mib(proc.pid, "Pss"),
                "rss_mib": rss_mib(proc.pid),
                "processes": len(pids),
                "by_mapping": {str(p): pss_by_mapping(p, folder) for p in pids},
                "traffic": traffic,
            }
        finally:
            stop(proc)
    out["ratio"] = out["w2"]["pss_mib"] / out["w1"]["pss_mib"]
    return out


def _header(title: str, command: str, load: tuple[float, float]) -> list[str]:
    return [
        f"## {title}",
        "",
        f"Command: `{command}` · machine: {machine()} · 1-min load average before / after: "
        f"{load[0]:.2f} / {load[1]:.2f}",
        "",
    ]


def report(res: dict[str, Any], command: str, load: tuple[float, float]) -> str:
    """The Markdown section."""
    lines = [
        *_header("Server memory with 1 and 2 workers (issue 16)", command, load),
        f"{res['items']:,} items × {res['factors']} factors, {res['users']:,} customers, "
        f"{res['events_per_user']} history items each, random ALS factors; "
        f"{res['requests']} live requests per server (no precomputed lists); PSS read once "
        "every worker had answered /healthz (had loaded the version).",
        "",
    ]
    rows = []
    for run in res["runs"]:
        b = res["build"][run["kind"]]
        rows.append(
            [
                run["kind"],
                run["server"],
                f"{b['bytes']['index'] / 2**20:.0f}",
                f"{run['w1']['pss_mib']:.0f}",
                f"{run['w2']['pss_mib']:.0f}",
                f"{run['ratio']:.2f}",
                "met" if run["ratio"] <= TARGET_RATIO else "NOT met",
            ]
        )
    lines.append(
        markdown_table(
            [
                "index",
                "server code",
                "index file MiB",
                "PSS 1 worker MiB",
                "PSS 2 workers MiB",
                "ratio",
                f"<= {TARGET_RATIO}x",
            ],
            rows,
        )
    )
    lines += ["", "PSS by mapping, MiB, summed over the server's processes:", ""]
    groups = ["index file", "factors", "other version files", "anonymous", "libraries"]
    rows = []
    for run in res["runs"]:
        for w in ("w1", "w2"):
            total: dict[str, float] = {}
            for per in run[w]["by_mapping"].values():
                for g, v in per.items():
                    total[g] = total.get(g, 0.0) + v
            rest = sum(v for g, v in total.items() if g not in groups)
            rows.append(
                [
                    f"{run['kind']} {run['server']} {w}",
                    *(f"{total.get(g, 0.0):.0f}" for g in groups),
                    f"{rest:.0f}",
                ]
            )
    lines.append(markdown_table(["server", *groups, "other"], rows))
    lines.append("")
    return "\n".join(lines)


def _main_trained(
    args: Any, servers: list[tuple[str, ...]], command: str, load_before: float
) -> int:
    """``--trained``: the promoted version of a trained shop, ``--runs`` times per server."""
    from recsys.registry import Registry

    home = Path(args.trained)
    registry = Registry(home / "models")
    version = registry.current_version()
    if version is None:
        raise SystemExit(f"{home}: no promoted version (train it first)")
    folder = registry.path(version)
    manifest = registry.manifest(version)
    users = json.loads((folder / "users.json").read_text(encoding="utf-8"))[-4000:]
    runs = []
    for name, tree in servers:
        for i in range(args.runs):
            print(f"-- {name}: run {i + 1} of {args.runs}", flush=True)
            run = measure_kind(
                "trained",
                home,
                users,
                folder,
                args.requests,
                server_path=tree or None,
                load_timeout_s=args.load_timeout,
            )
            runs.append({"server": name, "tree": tree, **run})
            print(f"-- {name}: ratio {run['ratio']:.3f}", flush=True)
    res = {
        "home": str(home),
        "version": version,
        "default_model": manifest.get("default_model"),
        "items": manifest.get("counts", {}).get("items"),
        "requests": args.requests,
        "runs": runs,
    }
    text = report_trained(res, command, (load_before, os.getloadavg()[0]))
    write_report(out_dir(args), "memory", text, res)
    print(text)
    return 0


def report_trained(res: dict[str, Any], command: str, load: tuple[float, float]) -> str:
    """The Markdown section of a ``--trained`` run: every run, and the median per server."""
    lines = [
        *_header("Server memory of a trained shop with 1 and 2 workers (issue 16)", command, load),
        f"Version {res['version']} of {res['home']} (default model {res['default_model']}, "
        f"{res['items']} items); {res['requests']} recommendation requests per server; PSS "
        "read once every worker had answered /healthz.",
        "",
    ]
    rows = []
    by_server: dict[str, list[float]] = {}
    for run in res["runs"]:
        anon = [m.get("anonymous", 0.0) for m in run["w1"]["by_mapping"].values()]
        by_server.setdefault(run["server"], []).append(run["ratio"])
        rows.append(
            [
                run["server"],
                f"{run['w1']['pss_mib']:.0f}",
                f"{run['w2']['pss_mib']:.0f}",
                f"{sum(anon):.0f}",
                f"{run['ratio']:.3f}",
                "met" if run["ratio"] <= TARGET_RATIO else "NOT met",
            ]
        )
    lines.append(
        markdown_table(
            [
                "server code",
                "PSS 1 worker MiB",
                "PSS 2 workers MiB",
                "1 worker's anonymous MiB",
                "ratio",
                f"<= {TARGET_RATIO}x",
            ],
            rows,
        )
    )
    lines.append("")
    for server, ratios in by_server.items():
        median = statistics.median(ratios)
        lines.append(f"Median ratio, {server}: {median:.3f} ({len(ratios)} runs)")
    lines.append("")
    return "\n".join(lines)


def published(
    home: Path, kind: str, args: Any, index_cache: Path | None
) -> tuple[Path, list[str], dict[str, Any]]:
    """The shop of ``kind`` under ``home``: the one a run with the same sizes left there, or
    a new one (see :func:`synthetic_version`)."""
    from recsys.registry import Registry

    n_items = int(float(args.items))
    sizes = {
        "items": n_items,
        "users": args.users,
        "factors": args.factors,
        "events_per_user": args.events_per_user,
        "ef_construction": args.ef_construction,
    }
    facts = home / "built.json"
    if facts.is_file():
        kept = json.loads(facts.read_text(encoding="utf-8"))
        registry = Registry(home / "models")
        version = registry.current_version()
        if kept["sizes"] == sizes and version is not None:
            users = [f"c{u}" for u in range(args.users)]
            return registry.path(version), users, kept["built"]
        raise SystemExit(f"{home} holds a shop of other sizes ({kept['sizes']}); use another")
    print(f"-- {kind}: publishing {n_items:,} items", flush=True)
    folder, users, built = synthetic_version(
        home,
        n_items=n_items,
        n_users=args.users,
        factors=args.factors,
        events_per_user=args.events_per_user,
        kind=kind,
        ef_construction=args.ef_construction,
        index_cache=index_cache,
    )
    facts.write_text(json.dumps({"sizes": sizes, "built": built}), encoding="utf-8")
    return folder, users, built


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; write ``memory.md`` / ``memory.json`` to the output folder."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--items", default="1e6")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--events-per-user", type=int, default=20)
    parser.add_argument("--kinds", default="usearch,hnsw", help="index kinds ([ann] kind)")
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument(
        "--home", default=None, help="keep the shops and built indexes here for the next run"
    )
    parser.add_argument(
        "--servers",
        default="this tree=",
        help="NAME=TREE,... serving code to measure on the same version: each TREE is put "
        "first on the servers' PYTHONPATH (empty: this tree)",
    )
    parser.add_argument("--load-timeout", type=float, default=600.0)
    parser.add_argument(
        "--trained", default=None, help="measure the version promoted in this trained shop"
    )
    parser.add_argument("--runs", type=int, default=1, help="repeats per server (--trained)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.items, args.users, args.factors, args.requests = "5000", 500, 16, 40
    n_items = int(float(args.items))
    servers = [tuple(x.split("=", 1)) for x in args.servers.split(",")]
    if any(len(s) != 2 for s in servers):
        parser.error(f"--servers: expected NAME=TREE,..., got {args.servers!r}")
    command = "python -m benchmarks.bench_memory " + " ".join(argv if argv is not None else [])
    load_before = os.getloadavg()[0]
    res: dict[str, Any] = {
        "items": n_items,
        "users": args.users,
        "factors": args.factors,
        "events_per_user": args.events_per_user,
        "requests": args.requests,
        "build": {},
        "runs": [],
    }
    if args.trained:
        return _main_trained(args, servers, command.strip(), load_before)
    with contextlib.ExitStack() as stack:
        root = (
            Path(args.home)
            if args.home
            else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        )
        for kind in args.kinds.split(","):
            home = root / kind
            folder, users, built = published(
                home, kind, args, root / "index-cache" if args.home else None
            )
            res["build"][kind] = built
            for name, tree in servers:
                print(f"-- {kind}, {name}: serving", flush=True)
                run = measure_kind(
                    kind,
                    home,
                    users,
                    folder,
                    args.requests,
                    server_path=tree or None,
                    load_timeout_s=args.load_timeout,
                )
                res["runs"].append({"kind": kind, "server": name, "tree": tree, **run})
                print(f"-- {kind}, {name}: ratio {run['ratio']:.2f}", flush=True)
    load = (load_before, os.getloadavg()[0])
    text = report(res, command.strip(), load)
    write_report(out_dir(args), "memory", text, res)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
