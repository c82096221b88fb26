"""Serving: the real API (``recsys serve``) against a bare reference app, under ``wrk``.

For each catalogue size a version is trained on synthetic data (``generate_shop``, ingested
with ``recsys ingest``, trained with ``recsys train``: ALS with 64 factors as the default
model, or with ``--model hybrid`` the hybrid (ALS still trained for the reference), popular as
the fallback, evaluation off). Then, in the same run and on 127.0.0.1:

* (i) ``recsys serve`` -- ``GET /v1/users/{id}/recommendations?k=10`` with default rules;
* (ii) :mod:`benchmarks.reference_app` -- the same dot product and ``argpartition`` top-k
  over the same factors, nothing else;

both with ``OPENBLAS_NUM_THREADS=1``. ``wrk`` rotates over the known user ids with a Lua
script, at 1 connection (1 thread) and 16 connections (2 threads), each run bounded
(``--duration`` seconds), real and reference alternating. Memory (VmRSS and PSS of the
server and its worker processes) is read after the load, with 1 and 2 workers. Targets:
throughput ratio real/reference at 16 connections >= 0.8; real p99 at 1 connection within
1.5x the reference's. Without ``wrk`` on the PATH a Python load generator (threads,
``http.client``) is used, and the table says so.

Run: ``.venv/bin/python -m benchmarks.bench_serving [--smoke] [--items 1e4,1e5]``
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    base_parser,
    env_vars,
    frozen_heap,
    markdown_table,
    median,
    out_dir,
    write_report,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """default_model = "{model}"
threads = 0
[evaluation]
enabled = false
[models.popular]
enabled = true
[models.als]
enabled = true
params = {{ factors = {factors}, iterations = {iterations} }}
"""
#: Added for ``--model hybrid`` (ALS stays: the reference app reads its factors).
HYBRID = """[models.hybrid]
enabled = true
params = {{ factors = {factors}, max_ranker_customers = {ranker_customers} }}
"""


def train_version(
    home: Path,
    n_users: int,
    n_items: int,
    factors: int,
    model: str = "als",
    ranker_customers: int = 0,
) -> tuple[Path, list[str]]:
    """Generate, ingest and train into ``home`` (``model`` is the default model: ``als`` or
    ``hybrid``, whose ranker learns from at most ``ranker_customers`` customers, 0 = all;
    ``packaged``: ``training/configs/default.toml`` as shipped, every model of it, the hybrid
    serving, with only the evaluation off and ``max_ranker_customers`` set); the version
    folder and its user ids."""
    from recsys.cli import main as cli
    from recsys.data.synthetic import generate_shop, write_shop
    from recsys.registry import Registry

    shop = generate_shop(n_users, n_items, 20 * n_users, seed=3)
    files = write_shop(shop, home / "data")
    cfg = home / "train.toml"
    values = {
        "model": model,
        "factors": factors,
        "iterations": 15 if factors >= 32 else 2,
        "ranker_customers": ranker_customers,
    }
    if model != "packaged":
        text = CONFIG.format(**values) + (HYBRID.format(**values) if model == "hybrid" else "")
        cfg.write_text(text, encoding="utf-8")
    with env_vars(RECSYS_HOME=str(home)), contextlib.redirect_stdout(io.StringIO()):
        rc = cli(["ingest", str(files["events"]), "--catalog", str(files["catalog"])])
        if rc != 0:
            raise RuntimeError(f"recsys ingest exited {rc}")
        if model == "packaged":
            _train_packaged(home, ranker_customers)
        else:
            rc = cli(["train", "--config", str(cfg)])
            if rc != 0:
                raise RuntimeError(f"recsys train exited {rc}")
    registry = Registry(home / "models")
    version = registry.current_version()
    assert version is not None
    folder = registry.path(version)
    users = json.loads((folder / "users.json").read_text(encoding="utf-8"))
    return folder, users


def _train_packaged(home: Path, ranker_customers: int) -> None:
    """``recsys train`` with the packaged config (what a shop serves: every model of it), the
    evaluation off and the hybrid's ranker on at most ``ranker_customers`` customers. A
    reduced config once hid 157 MiB a worker that the packaged one's models cost."""
    from recsys.registry import Registry
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store
    from training.config import load_training_config
    from training.pipeline import run_training

    config = load_training_config(None)
    hybrid = config.models["hybrid"]
    params = {**hybrid.params, "max_ranker_customers": ranker_customers}
    config = config.model_copy(
        update={
            "evaluation": config.evaluation.model_copy(update={"enabled": False}),
            "models": {**config.models, "hybrid": hybrid.model_copy(update={"params": params})},
        }
    )
    store = open_store(load_settings(Settings))
    try:
        run_training(config, store=store, registry=Registry(home / "models"))
    finally:
        store.close()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], env: dict[str, str], port: int, probe: str) -> subprocess.Popen[bytes]:
    """Start a server and wait until ``probe`` answers 200 (60 s at most)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}:\n{err[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", probe)
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"{cmd[:4]} did not answer {probe} within 60 s")


def start_reference(
    port: int, workers: int, env: dict[str, str], probe: str
) -> subprocess.Popen[bytes]:
    """Start the bare reference app (``benchmarks.reference_app``, the version named by
    ``REFERENCE_VERSION_DIR`` in ``env``) with uvicorn and wait until ``probe`` answers."""
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "benchmarks.reference_app:app_from_env",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    return start(cmd, env, port, probe)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server we started (and wait for it)."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr:
        proc.stderr.close()


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Memory of a process and all its descendants, MiB (Linux /proc).

    ``VmRSS`` counts every resident page in every process, so pages the workers share (the
    memory-mapped model arrays, through the page cache) are counted once per worker; ``Pss``
    (``/proc/PID/smaps_rollup``) divides each shared page among the processes mapping it, so
    the sum over the server's processes is what they really cost together.
    """
    source = "status" if field == "VmRSS" else "smaps_rollup"
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/{source}").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk_run(port: int, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run; requests/s, p50/p99 ms and non-2xx count."""
    threads = 1 if connections == 1 else 2
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
    ]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, flags=re.M))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return {
        "rps": rps,
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "non_2xx": int(bad.group(1)) if bad else 0,
    }


def python_run(port: int, users: list[str], connections: int, seconds: float) -> dict[str, Any]:
    """Fallback load generator: one thread per connection, keep-alive, fixed duration."""
    latencies: list[float] = []
    bad = [0]
    lock = threading.Lock()

    def worker(offset: int, end: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        n, mine = offset, []
        while time.monotonic() < end:
            n += connections
            t = time.perf_counter()
            conn.request("GET", f"/v1/users/{users[n % len(users)]}/recommendations?k=10")
            resp = conn.getresponse()
            resp.read()
            mine.append((time.perf_counter() - t) * 1e3)
            if resp.status != 200:
                with lock:
                    bad[0] += 1
        with lock:
            latencies.extend(mine)

    with frozen_heap():  # the client's collector pauses are not the server's latency
        # the run starts after frozen_heap's collection, which in a large process (a whole
        # test session's) can outlast a short run: a deadline set before it passed unmet
        end = time.monotonic() + seconds
        ts = [threading.Thread(target=worker, args=(i, end)) for i in range(connections)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    arr = np.array(latencies)
    return {
        "rps": len(arr) / seconds,
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "non_2xx": bad[0],
    }


def lua_script(folder: Path, users: list[str]) -> Path:
    """A wrk script that rotates over the user ids."""
    path = folder / "rotate.lua"
    ids = ",".join(json.dumps(u) for u in users[:20_000])
    path.write_text(
        f"local ids = {{{ids}}}\nlocal n = math.random(#ids)\n"
        "request = function()\n  n = n % #ids + 1\n"
        '  return wrk.format("GET", "/v1/users/" .. ids[n] .. "/recommendations?k=10")\nend\n',
        encoding="utf-8",
    )
    return path


def bench_size(
    n_items: int,
    n_users: int,
    factors: int,
    seconds: float,
    runs: int,
    tool: str,
    tmp: Path,
    *,
    smoke: bool = False,
    model: str = "als",
    access_log: bool = True,
) -> dict[str, Any]:
    """Train one version, then load both servers; every measurement of this size."""
    home = tmp / f"home{n_items}"
    t = time.perf_counter()
    folder, users = train_version(home, n_users, n_items, factors, model)
    setup_s = time.perf_counter() - t
    script = lua_script(tmp, users)
    env = dict(
        os.environ,
        RECSYS_HOME=str(home),
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        REFERENCE_VERSION_DIR=str(folder),
    )
    recsys_bin = str(Path(sys.executable).with_name("recsys"))
    probe = f"/v1/users/{users[0]}/recommendations?k=10"
    result: dict[str, Any] = {
        "items": n_items,
        "users": len(users),
        "factors": factors,
        "model": model,
        "setup_s": setup_s,
        "tool": tool,
        "runs": {},
        "rss_mib": {},
        "pss_mib": {},
    }
    for workers in (1,) if smoke else (1, 2):
        rp, fp = free_port(), free_port()
        real = start(
            [recsys_bin, "serve", "--port", str(rp), "--workers", str(workers)]
            + ([] if access_log else ["--no-access-log"]),
            env,
            rp,
            probe,
        )
        ref = None
        try:
            ref = start_reference(fp, workers, env, probe)
            conns = (1, 16) if workers == 1 else (16,)
            for c in conns:
                for _ in range(runs):
                    for name, port in (("real", rp), ("reference", fp)):
                        if tool == "wrk":
                            r = wrk_run(port, script, c, seconds)
                        else:
                            r = python_run(port, users, c, seconds)
                        result["runs"].setdefault(f"{name} w{workers} c{c}", []).append(r)
            result["rss_mib"][f"real w{workers}"] = rss_mib(real.pid)
            result["rss_mib"][f"reference w{workers}"] = rss_mib(ref.pid)
            result["pss_mib"][f"real w{workers}"] = rss_mib(real.pid, "Pss")
            result["pss_mib"][f"reference w{workers}"] = rss_mib(ref.pid, "Pss")
        finally:
            stop(real)
            if ref is not None:
                stop(ref)
    return result


def summarise(res: dict[str, Any]) -> tuple[list[list[Any]], dict[str, float]]:
    """Median rows per (server, workers, connections) and the target ratios."""
    rows, med = [], {}
    for key, runs in res["runs"].items():
        m = {f: median([r[f] for r in runs]) for f in ("rps", "p50_ms", "p99_ms")}
        med[key] = m
        bad = sum(r["non_2xx"] for r in runs)
        rows.append([res["items"], key, len(runs), m["rps"], m["p50_ms"], m["p99_ms"], bad])
    ratios = {}
    for w in (1, 2):
        if f"real w{w} c16" in med:
            ratios[f"throughput real/ref, {w} worker(s), 16 conn"] = (
                med[f"real w{w} c16"]["rps"] / med[f"reference w{w} c16"]["rps"]
            )
    if "real w1 c1" in med:
        ratios["p99 real/ref, 1 worker, 1 conn"] = (
            med["real w1 c1"]["p99_ms"] / med["reference w1 c1"]["p99_ms"]
        )
        ratios["p50 real/ref, 1 worker, 1 conn"] = (
            med["real w1 c1"]["p50_ms"] / med["reference w1 c1"]["p50_ms"]
        )
    return rows, ratios


def main(argv: Sequence[str] | None = None) -> int:
    """Run every catalogue size; write ``serving.md``/``.json``."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--items", default=None, help="catalogue sizes (default 1e4,1e5)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per wrk run (10)")
    parser.add_argument("--runs", type=int, default=None, help="runs per setting (3)")
    parser.add_argument("--python-load", action="store_true", help="do not use wrk")
    parser.add_argument(
        "--users",
        type=int,
        default=None,
        help="customers, 20 events each (default: 2x items up to 10^4, then as many as items)",
    )
    parser.add_argument(
        "--model", choices=("als", "hybrid"), default="als", help="the API's default model (als)"
    )
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="serve without a log line per request, as the reference (which logs warnings only)",
    )
    args = parser.parse_args(argv)
    out = out_dir(args)
    tool = "wrk" if shutil.which("wrk") and not args.python_load else "python"
    sizes = [int(float(s)) for s in (args.items or ("300" if args.smoke else "1e4,1e5")).split(",")]
    seconds = args.duration or (1.0 if args.smoke else 10.0)
    runs = args.runs or (1 if args.smoke else 3)
    factors = 8 if args.smoke else 64
    results, md = [], []
    label = "wrk 4.1" if tool == "wrk" else "**Python load generator (wrk not available)**"
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            n_users = args.users or (max(2 * n, 500) if n <= 10_000 else n)
            res = bench_size(
                n,
                n_users,
                factors,
                seconds,
                runs,
                tool,
                Path(tmp),
                smoke=args.smoke,
                model=args.model,
                access_log=args.access_log,
            )
            rows, ratios = summarise(res)
            res["ratios"] = ratios
            results.append(res)
            md += [
                f"**{n:,} items**, {res['users']:,} users, default model {args.model} "
                f"({factors} factors; the reference uses the ALS factors) "
                f"(version trained in {res['setup_s']:.0f} s); load: {label}, {seconds:g} s "
                f"per run, median of {runs}, real and reference alternating; "
                f"access log {'on' if args.access_log else 'off'} in the real API.",
                "",
                markdown_table(
                    [
                        "items",
                        "server, workers, connections",
                        "runs",
                        "req/s",
                        "p50 ms",
                        "p99 ms",
                        "non-2xx",
                    ],
                    rows,
                ),
                "",
                "Ratios: " + "; ".join(f"{k} **{v:.2f}**" for k, v in ratios.items()) + ".",
                "",
                "Resident memory (MiB, server + workers): "
                + ", ".join(f"{k} {v:.0f}" for k, v in res["rss_mib"].items())
                + "; proportional (PSS, shared pages divided among processes): "
                + ", ".join(f"{k} {v:.0f}" for k, v in res.get("pss_mib", {}).items())
                + ".",
                "",
            ]
            print("\n".join(md[-8:]), flush=True)
    write_report(out, "serving", "\n".join(md), {"results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
