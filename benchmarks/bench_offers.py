"""Offers against recommendations: ``recsys serve`` from a cold start, under the same ``wrk`` load.

Issue 16's target: ``GET /v1/users/{id}/offers`` p99 at most 2x ``GET /v1/users/{id}/
recommendations`` p99 under the same load, *from the first request on*, and no request pays for
a shop-wide context. Set-up, once: ingest Online Retail (``--format online-retail``) into a
fresh home and train the default configuration (or, with ``--synthetic N``, a generated shop of
``N`` customers). Then for the code of ``--rev`` (exported with ``git archive``, so that a
working tree others are editing does not leak in), and with ``--before`` for the same code with
the offer files of an older revision too:

* **first answer**: start ``recsys serve`` and ask for one customer's offers at once,
  repeating until the first 200; seconds from the start of the process, and the same for
  recommendations (median of ``--runs`` starts);
* **load**: for each endpoint and 1 and 16 connections, a *fresh* server, and ``wrk`` started
  as soon as ``/healthz`` answers (nothing excluded: the first requests are in the
  percentiles), rotating over the same known customers, with an API key (so offers record
  their impressions, as a shop's page would); ``--runs`` runs, median;
* **memory**: VmRSS and PSS of the server and its workers after 16 connections of offers,
  with 1 and with 2 workers.

The serving day is fixed to the day after the data (``RECSYS_OFFERS_DATE``), so the triggers
fire as they would have; the packaged example promotions are served.

Run: ``nice -n 10 .venv/bin/python -m benchmarks.bench_offers --before 885aca5``
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks.bench_serving import _ms, free_port, rss_mib, stop
from benchmarks.common import base_parser, markdown_table, median, out_dir, write_report

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-offers-key"
ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail.csv.gz"
#: The default configuration, with the smoke run's models only (seconds to train).
SMOKE_TOML = """default_model = "buy_again"
threads = 0
[evaluation]
enabled = false
[models.popular]
enabled = true
[models.buy_again]
enabled = true
[models.bought_together]
model = "cooccurrence"
params = { source = "basket" }
"""
ENDPOINTS = {"offers": "offers?k=10", "recommendations": "recommendations?k=10"}


def export(rev: str, into: Path, *, old: str | None = None, paths: Sequence[str] = ()) -> Path:
    """The code of ``rev`` as a folder; with ``old``, ``paths`` as they were at ``old``.

    The overlay measures one change against a tree others keep changing: a model version
    trained by today's code may not load in last week's, but today's code with last week's
    offers loads it.
    """
    folder = into / (f"code-{rev}" + (f"-with-{old}" if old else "")).replace("/", "_")
    folder.mkdir()
    layers: list[tuple[str, Sequence[str]]] = [(rev, ())]
    if old:
        layers.append((old, paths))
    for source, only in layers:
        for path in only:  # files added since ``old`` go too
            target = folder / path
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", source, *only], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def cli(code: Path, env: dict[str, str], *args: str) -> None:
    """Run ``recsys ARGS`` with the code of ``code``."""
    cmd = [sys.executable, "-c", "import sys; from recsys.cli import main; sys.exit(main())"]
    done = subprocess.run(
        [*cmd, *args],
        cwd=code,
        env={**env, "PYTHONPATH": str(code)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"recsys {' '.join(args[:2])} exited {done.returncode}:\n{done.stderr[-3000:]}"
        )


def prepare(home: Path, code: Path, *, smoke: bool, synthetic: int | None) -> dict[str, Any]:
    """Ingest and train into ``home``; the customers, the serving day and the set-up time."""
    env = {**os.environ, "RECSYS_HOME": str(home)}
    started = time.perf_counter()
    if synthetic:
        data = home / "data"
        cli(code, env, "generate", "--users", str(synthetic), "--out", str(data))
        cli(
            code,
            env,
            "ingest",
            str(data / "events.csv.gz"),
            "--catalog",
            str(data / "catalog.csv"),
            "--customers",
            str(data / "customers.csv"),
        )
    else:
        cli(code, env, "ingest", str(ONLINE_RETAIL), "--format", "online-retail")
    args = ["train"]
    if smoke:
        cfg = home / "smoke.toml"
        cfg.write_text(SMOKE_TOML, encoding="utf-8")
        args += ["--config", str(cfg)]
    cli(code, env, *args)
    from recsys.registry import Registry

    registry = Registry(home / "models")
    version = registry.current_version()
    if version is None:
        raise RuntimeError(f"recsys train promoted no version in {home / 'models'}")
    folder = registry.path(version)
    users = json.loads((folder / "users.json").read_text(encoding="utf-8"))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    as_of = date.fromisoformat(str(manifest["as_of"])[:10])
    return {
        "users": users if isinstance(users, list) else list(users),
        "day": as_of + timedelta(days=1),
        "setup_s": time.perf_counter() - started,
        "version": version,
        "models": sorted(manifest.get("models", {})),
    }


def lua(folder: Path, users: list[str], endpoint: str) -> Path:
    """A wrk script rotating over ``users`` (the same start for every endpoint), with a key."""
    path = folder / f"{endpoint}.lua"
    ids = ",".join(json.dumps(u) for u in users[:20_000])
    path.write_text(
        f"local ids = {{{ids}}}\nlocal n = 0\n"
        f'wrk.headers["X-API-Key"] = "{KEY}"\n'
        "request = function()\n  n = n % #ids + 1\n"
        f'  return wrk.format("GET", "/v1/users/" .. ids[n] .. "/{ENDPOINTS[endpoint]}")\nend\n',
        encoding="utf-8",
    )
    return path


def serve(code: Path, env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    """Start ``recsys serve`` with the code of ``code`` (not waiting)."""
    cmd = [sys.executable, "-c", "import sys; from recsys.cli import main; sys.exit(main())"]
    return subprocess.Popen(
        [*cmd, "serve", "--port", str(port), "--workers", str(workers), "--no-access-log"],
        cwd=code,
        env={**env, "PYTHONPATH": str(code)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def first_200(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until ``path`` first answers 200 (from now)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"recsys serve exited {proc.returncode}:\n{err[-3000:]}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            conn.request("GET", path, headers={"X-API-Key": KEY})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not answer 200 within {timeout:.0f} s")


def wrk(port: int, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run (a 60 s request timeout: a request that waits for a build is counted)."""
    import re

    threads = 1 if connections == 1 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    cmd += ["--timeout", "60s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, flags=re.M))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*timeout (\d+)", text)
    done = re.search(r"(\d+) requests in", text)
    return {
        "requests": int(done.group(1)) if done else 0,
        "rps": rps,
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "timeouts": int(errors.group(1)) if errors else 0,
    }


def bench_rev(
    rev: str,
    code: Path,
    home: Path,
    shop: dict[str, Any],
    tmp: Path,
    *,
    seconds: float,
    runs: int,
    first_runs: int,
) -> dict[str, Any]:
    """Every measurement of one revision."""
    env = {
        **os.environ,
        "RECSYS_HOME": str(home),
        "RECSYS_API_KEYS": KEY,
        "RECSYS_OFFERS_DATE": shop["day"].isoformat(),
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    users = shop["users"]
    out: dict[str, Any] = {"rev": rev, "first_s": {}, "runs": {}, "rss_mib": {}, "pss_mib": {}}
    for endpoint, tail in ENDPOINTS.items():
        for _ in range(first_runs):
            port = free_port()
            started = time.monotonic()
            proc = serve(code, env, port, 1)
            try:
                first_200(port, "/healthz", proc, 300)
                up = time.monotonic() - started
                first_200(port, f"/v1/users/{users[0]}/{tail}", proc, 300)
                total = time.monotonic() - started
                out["first_s"].setdefault(endpoint, []).append(total)
                out["first_s"].setdefault("healthz", []).append(up)
            finally:
                stop(proc)
    scripts = {e: lua(tmp, users, e) for e in ENDPOINTS}
    # wrk counts only the requests that complete within its run: a run shorter than the wait
    # for the first answer would hide that wait, so each run lasts that long more
    slowest = max(t for e in ENDPOINTS for t in out["first_s"][e])
    seconds = seconds + math.ceil(slowest)
    out["duration_s"] = seconds
    for connections in (1, 16):
        for _ in range(runs):
            for endpoint in ENDPOINTS:
                port = free_port()
                proc = serve(code, env, port, 1)
                try:
                    first_200(port, "/healthz", proc, 300)
                    r = wrk(port, scripts[endpoint], connections, seconds)
                    out["runs"].setdefault(f"{endpoint} c{connections}", []).append(r)
                    if endpoint == "offers" and connections == 16:
                        out["rss_mib"].setdefault("w1", []).append(rss_mib(proc.pid))
                        out["pss_mib"].setdefault("w1", []).append(rss_mib(proc.pid, "Pss"))
                finally:
                    stop(proc)
    port = free_port()
    proc = serve(code, env, port, 2)
    try:
        first_200(port, "/healthz", proc, 300)
        out["runs"].setdefault("offers w2 c16", []).append(
            wrk(port, scripts["offers"], 16, seconds)
        )
        out["rss_mib"]["w2"] = [rss_mib(proc.pid)]
        out["pss_mib"]["w2"] = [rss_mib(proc.pid, "Pss")]
    finally:
        stop(proc)
    return out


def summarise(res: dict[str, Any]) -> tuple[list[list[Any]], dict[str, float]]:
    """Median rows and the target ratios of one revision."""
    rows, med = [], {}
    for key, runs in res["runs"].items():
        m = {f: median([r[f] for r in runs]) for f in ("rps", "p50_ms", "p99_ms")}
        med[key] = m
        bad = sum(r["non_2xx"] + r["timeouts"] for r in runs)
        rows.append([res["rev"], key, len(runs), m["rps"], m["p50_ms"], m["p99_ms"], bad])
    ratios = {}
    for c in (1, 16):
        off, rec = med.get(f"offers c{c}"), med.get(f"recommendations c{c}")
        if off and rec:
            ratios[f"p99 offers/recs c{c}"] = off["p99_ms"] / rec["p99_ms"]
            ratios[f"p50 offers/recs c{c}"] = off["p50_ms"] / rec["p50_ms"]
    return rows, ratios


def load_average() -> str:
    """``uptime``'s load averages."""
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare once, measure every revision; write ``offers.md``/``.json``."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the code measured (a git revision)")
    parser.add_argument(
        "--before",
        default=None,
        help="also measure --rev with --before-paths as they were at this revision",
    )
    parser.add_argument(
        "--before-paths",
        default="recsys/offers,recsys/service.py,serving/ui/views.py",
        help="what --before replaces (comma-separated; default: the offer code and its caller)",
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per wrk run (10)")
    parser.add_argument("--runs", type=int, default=None, help="runs per setting (3)")
    parser.add_argument(
        "--first-runs", type=int, default=None, help="starts timed to the first answer (--runs)"
    )
    parser.add_argument(
        "--synthetic", type=int, default=None, help="a generated shop of N customers instead"
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="keep the prepared shop here, and reuse it when it is there (default: a temp dir)",
    )
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("bench_offers: wrk is not on the PATH; skipped")
        return 0
    out = out_dir(args)
    seconds = args.duration or (2.0 if args.smoke else 10.0)
    runs = args.runs or (1 if args.smoke else 3)
    paths = [p.strip() for p in args.before_paths.split(",") if p.strip()]
    before = load_average()
    results = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        codes = {f"{args.rev} (after)": export(args.rev, tmp)}
        if args.before:
            before_code = export(args.rev, tmp, old=args.before, paths=paths)
            codes = {f"{args.rev} + {args.before}'s offers (before)": before_code, **codes}
        revs = list(codes)
        home = args.home or tmp / "home"
        saved = home / "bench_offers_shop.json"
        if saved.exists():
            shop = json.loads(saved.read_text(encoding="utf-8"))
            shop["day"] = date.fromisoformat(shop["day"])
        else:
            home.mkdir(parents=True, exist_ok=True)
            shop = prepare(home, codes[revs[-1]], smoke=args.smoke, synthetic=args.synthetic)
            saved.write_text(json.dumps(shop, default=str), encoding="utf-8")
        print(f"prepared {len(shop['users']):,} customers in {shop['setup_s']:.0f} s", flush=True)
        for rev in revs:
            res = bench_rev(
                rev,
                codes[rev],
                home,
                shop,
                tmp,
                seconds=seconds,
                runs=runs,
                first_runs=args.first_runs or runs,
            )
            res["rows"], res["ratios"] = summarise(res)
            results.append(res)
            print(json.dumps(res["ratios"]), flush=True)
    after = load_average()
    durations = ", ".join(f"{r['rev']}: {r['duration_s']:g} s" for r in results)
    data = "Online Retail" if not args.synthetic else f"synthetic, {args.synthetic:,} customers"
    md = [
        f"{data}: {len(shop['users']):,} customers known to version {shop['version']} "
        f"(models {', '.join(shop['models'])}; set up in {shop['setup_s']:.0f} s), serving day "
        f"{shop['day']}; wrk, {seconds:g} s per run plus the slowest start to first answer of "
        f"the code ({durations}), "
        f"median of {runs}, a fresh server per run (nothing excluded); load average before "
        f"{before}, after {after}.",
        "",
        markdown_table(
            ["code", "endpoint, connections", "runs", "req/s", "p50 ms", "p99 ms", "errors"],
            [row for r in results for row in r["rows"]],
        ),
        "",
        markdown_table(
            ["code", *next(iter(results))["ratios"].keys()],
            [[r["rev"], *r["ratios"].values()] for r in results],
        ),
        "",
        markdown_table(
            [
                "code",
                "start to /healthz s",
                "start to first recommendations s",
                "start to first offers s",
                "RSS w1 MiB",
                "PSS w1 MiB",
                "RSS w2 MiB",
                "PSS w2 MiB",
            ],
            [
                [
                    r["rev"],
                    median(r["first_s"]["healthz"]),
                    median(r["first_s"]["recommendations"]),
                    median(r["first_s"]["offers"]),
                    median(r["rss_mib"]["w1"]),
                    median(r["pss_mib"]["w1"]),
                    median(r["rss_mib"]["w2"]),
                    median(r["pss_mib"]["w2"]),
                ]
                for r in results
            ],
        ),
    ]
    write_report(out, "offers", "\n".join(md), {"results": results, "shop": shop})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
