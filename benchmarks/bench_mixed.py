"""Mixed traffic: the real API against the bare reference under a shop's request mix (wrk).

Issue 16's mix, per request: 65% recommendations for known customers with nothing new since
training, 20% for customers who posted events in the last minute (the live path: fold-in), 5%
for unknown customers, 5% offers, 5% ``POST /v1/events`` (one view of a live customer). The
reference (``benchmarks/reference_app.py``) answers every read by exact ALS scoring, unknown
customers from a fixed list, and accepts events without storing them. Same version, same
machine, runs alternating; ``OPENBLAS_NUM_THREADS=1`` for both. Before every pair of runs each
live customer posts one new event to the real API (a new item each time; the reference keeps
no events), so that every run starts with their kept lists out of date, as the first does (a
customer's list is reused until their next event). The report's JSON holds every run's figures
beside the medians.

Per request type: during every wrk run one more connection sends the types in turn (one
request at a time) and times each, so the table also gives each type's p50/p99 under that load
(wrk itself reports only the whole mix). With that connection, "1 connection" is two; so with
one worker the mix also runs from that client alone ("w1 c1 alone": the types drawn with the
mix's shares, each timed), which is what issue 16's "live-path p99 at 1 connection" asks for.

``python -m benchmarks.bench_mixed [--smoke] [--items 1e5] [--users N] [--model als|hybrid|packaged]
[--ranker-customers N] [--home DIR] [--alone-only] [--duration 5] [--runs 3] [--pace-ms MS]``:
``--alone-only`` runs only "w1 c1 alone"; ``--home`` keeps the trained shop in DIR and reuses it
next time (training 10^5 items takes minutes); without it the shop is built in a temporary folder
and removed at the end. The shop has ``--users`` customers (default: as many as items) with 20
events each; ``--ranker-customers`` bounds the customers the hybrid's ranker learns from (its
``max_ranker_customers``; 0 = all), which bounds its fit at large catalogues. ``--model packaged``
trains ``training/configs/default.toml`` as shipped (every model in it, the hybrid serving;
evaluation off), what ``bench_memory --trained`` should measure: a reduced config leaves out models
whose memory a shop pays. The runs post events, and each event since the version makes a live
customer's list dearer, so the store is put back as it was at the end: runs on a kept ``--home``
start alike.

``--pace-ms MS`` paces the load: each wrk connection waits MS before each request (wrk's
``delay``, outside the latency it measures), so 16 connections offer at most 16,000 / MS
requests a second to either server, below what both can serve: the tail at a load the server
keeps up with, not how a saturated queue is shared. No timing connection runs then (sending
back to back, it would be most of the load).

``--aa`` (an A/A run) puts a second reference where the real server was, named "reference B"
in the report, alternated with the first as the real one is: how far a median ratio strays from
1.0 when both sides are the same app, the noise the real-to-reference ratios are read against.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_serving import (
    free_port,
    start,
    start_reference,
    stop,
    train_version,
    wrk_run,
)
from benchmarks.common import base_parser, frozen_heap, nearest_rank, out_dir, write_report

KEY = "bench-key"
LIVE_USERS = 500


def mix_script(
    folder: Path, known: list[str], live: list[str], items: list[str], pace_ms: float = 0.0
) -> Path:
    """The wrk Lua script drawing each request from the mix; with ``pace_ms``, each
    connection waits that long before each request (wrk's ``delay``, not in the latency)."""

    def table(values: list[str]) -> str:
        return "{" + ",".join(json.dumps(v) for v in values) + "}"

    path = folder / "mix.lua"
    path.write_text(
        f"""local known = {table(known[:20000])}
local live = {table(live)}
local items = {table(items[:5000])}
local n = 0
local tag = tostring(math.random(1000000000))
request = function()
  n = n + 1
  local r = math.random(100)
  if r <= 65 then
    return wrk.format("GET", "/v1/users/" .. known[math.random(#known)] .. "/recommendations?k=10")
  elseif r <= 85 then
    return wrk.format("GET", "/v1/users/" .. live[math.random(#live)] .. "/recommendations?k=10")
  elseif r <= 90 then
    local stranger = "stranger-" .. math.random(1000000)
    return wrk.format("GET", "/v1/users/" .. stranger .. "/recommendations?k=10")
  elseif r <= 95 then
    return wrk.format("GET", "/v1/users/" .. known[math.random(#known)] .. "/offers?k=10")
  end
  local body = '[{{"event_id":"mix-' .. tag .. '-' .. n .. '","user_id":"' ..
    live[math.random(#live)] .. '","item_id":"' .. items[math.random(#items)] ..
    '","event_type":"view"}}]'
  return wrk.format("POST", "/v1/events",
    {{["Content-Type"] = "application/json", ["X-API-Key"] = "{KEY}"}}, body)
end
"""
        + (f"delay = function()\n  return {pace_ms:g}\nend\n" if pace_ms > 0 else ""),
        encoding="utf-8",
    )
    return path


TYPES = ("known", "live", "unknown", "offers", "event")
#: issue 16's mix, in TYPES order (the Lua script's shares)
MIX = (65, 20, 5, 5, 5)


class TypeSampler:
    """Times each request type, one request at a time over one connection: the types in
    turn while wrk loads the server (the latency a request of that type sees under the mix),
    or, with ``mix``, drawn with the mix's shares as the only connection (issue 16's "at 1
    connection": wrk's connection and this one would be two)."""

    def __init__(
        self, port: int, known: list[str], live: list[str], items: list[str], mix: bool = False
    ) -> None:
        self.port, self.known, self.live, self.items, self.mix = port, known, live, items, mix
        self.times: dict[str, list[float]] = {t: [] for t in TYPES}
        self.failed = 0
        self.elapsed = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._frozen = contextlib.ExitStack()

    def __enter__(self) -> TypeSampler:
        # the client's own collector pauses are not the server's latency (frozen_heap)
        self._frozen.enter_context(frozen_heap())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self._frozen.close()

    def _run(self) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per sampled request
        rng = random.Random(self.port)
        began = time.perf_counter()
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30.0) as c:
            n = 0
            while not self._stop.is_set():
                kind = rng.choices(TYPES, weights=MIX)[0] if self.mix else TYPES[n % len(TYPES)]
                n += 1
                started = time.perf_counter()
                if kind == "event":
                    body = [
                        {
                            "event_id": f"sampler-{self.port}-{n}-{rng.random()}",
                            "user_id": rng.choice(self.live),
                            "item_id": rng.choice(self.items),
                            "event_type": "view",
                        }
                    ]
                    r = c.post("/v1/events", json=body, headers={"X-API-Key": KEY})
                else:
                    who = {
                        "known": lambda: rng.choice(self.known),
                        "live": lambda: rng.choice(self.live),
                        "unknown": lambda: f"stranger-{rng.randrange(10**6)}",
                        "offers": lambda: rng.choice(self.known),
                    }[kind]()
                    path = "offers" if kind == "offers" else "recommendations"
                    r = c.get(f"/v1/users/{who}/{path}?k=10")
                elapsed = (time.perf_counter() - started) * 1000
                if r.status_code < 300:
                    self.times[kind].append(elapsed)
                else:
                    self.failed += 1
        self.elapsed = time.perf_counter() - began

    def summary(self) -> dict[str, float]:
        """p50 and p99 in ms per type (``<type>_p50``, ``<type>_p99``); with ``mix``, also
        the whole mix's (``rps``, ``p50_ms``, ``p99_ms``, ``non_2xx``) as wrk reports it."""
        out: dict[str, float] = {}
        every = [t for values in self.times.values() for t in values]
        if self.mix and every:
            out["rps"] = (len(every) + self.failed) / max(self.elapsed, 1e-9)
            out["p50_ms"] = nearest_rank(every, 0.5)
            out["p99_ms"] = nearest_rank(every, 0.99)
            out["non_2xx"] = float(self.failed)
        for kind, values in self.times.items():
            if values:
                out[f"{kind}_p50"] = nearest_rank(values, 0.5)
                out[f"{kind}_p99"] = nearest_rank(values, 0.99)
                out[f"{kind}_n"] = float(len(values))
        return out


def _prime(port: int, live: list[str], items: list[str], round_: int = 0) -> None:
    """Every live customer posts one new event, of a new item for each ``round_``: before
    every pair of runs, so that none starts with the lists the run before it left kept (a
    customer's list is reused until their next event)."""
    with httpx.Client(timeout=30.0) as c:
        for j, user in enumerate(live):
            body = [
                {
                    "event_id": f"prime-{port}-{round_}-{j}",
                    "user_id": user,
                    "item_id": items[(j + round_ * len(live)) % len(items)],
                    "event_type": "view",
                }
            ]
            c.post(f"http://127.0.0.1:{port}/v1/events", json=body, headers={"X-API-Key": KEY})


def _wait_offers(port: int, timeout: float = 600.0) -> float:
    """Seconds until the server's offer context is built (``/readyz`` says so)."""
    start_t = time.monotonic()
    while time.monotonic() - start_t < timeout:
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json()
            if body.get("offers", "ready") == "ready":
                return time.monotonic() - start_t
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("the offer context was not built in time")


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--items", type=float, default=1e5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", type=float, default=None, help="customers (default: --items)")
    parser.add_argument(
        "--model",
        choices=("als", "hybrid", "packaged"),
        default="als",
        help="the shop's training: ALS, or ALS and the hybrid, or the packaged config",
    )
    parser.add_argument("--ranker-customers", type=int, default=0)
    parser.add_argument("--home", type=Path, default=None, help="keep and reuse the shop here")
    parser.add_argument(
        "--alone-only",
        action="store_true",
        help='only "w1 c1 alone" (issue 16\'s live p99 at 1 connection): no wrk, one worker',
    )
    parser.add_argument(
        "--only",
        choices=("w1 c1", "w1 c16", "w2 c16"),
        default=None,
        help='only this wrk setting (no "c1 alone" runs): one setting compared quickly',
    )
    parser.add_argument(
        "--pace-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="each wrk connection waits MS before each request: a load below saturation, "
        "the same for both servers (no per-type timing connection then)",
    )
    parser.add_argument(
        "--aa",
        action="store_true",
        help='A/A: a second reference ("reference B") in the real server\'s place',
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("skipped: wrk is not installed (Debian's package wrk)")
        return 0
    n_items = 2000 if args.smoke else int(args.items)
    runs = 1 if args.smoke else args.runs
    seconds = 2.0 if args.smoke else args.duration
    tmp = Path(tempfile.mkdtemp(prefix="bench-mixed-"))
    try:
        return _bench(args, tmp, n_items, runs, seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _trained(
    home: Path, n_items: int, n_users: int, model: str, ranker_customers: int
) -> tuple[Path, list[str]]:
    """The shop's current version and its users: trained now, or found in a kept ``home``."""
    from recsys.registry import Registry

    if (home / "models").exists():
        registry = Registry(home / "models")
        version = registry.current_version()
        if version is not None:
            folder = registry.path(version)
            users = json.loads((folder / "users.json").read_text(encoding="utf-8"))
            items = json.loads((folder / "items.json").read_text(encoding="utf-8"))
            if len(items) == n_items:
                return folder, users
            raise SystemExit(f"{home}: its shop has {len(items):,} items, not {n_items:,}")
    return train_version(home, n_users, n_items, 64, model=model, ranker_customers=ranker_customers)


def _bench(args: Any, tmp: Path, n_items: int, runs: int, seconds: float) -> int:
    home = args.home.resolve() if args.home is not None else tmp / "home"
    n_users = n_items if args.users is None or args.smoke else int(args.users)
    folder, users = _trained(home, n_items, n_users, args.model, args.ranker_customers)
    # every run posts events, and a live customer's list costs more with each event since the
    # version: the store is put back as it was at the end, so the next run starts alike
    saved = _snapshot_store(home, tmp / "store")
    try:
        return _bench_on(args, tmp, home, folder, users, n_items, runs, seconds)
    finally:
        _restore_store(home, saved)


def _snapshot_store(home: Path, to: Path) -> list[Path]:
    """Copy the SQLite store's files (``recsys.db`` and its WAL) into ``to``."""
    to.mkdir(parents=True, exist_ok=True)
    kept = []
    for path in home.glob("recsys.db*"):
        shutil.copy2(path, to / path.name)
        kept.append(to / path.name)
    return kept


def _restore_store(home: Path, saved: list[Path]) -> None:
    """Put the files :func:`_snapshot_store` copied back (no server has the store open)."""
    for path in home.glob("recsys.db*"):
        path.unlink()
    for path in saved:
        shutil.copy2(path, home / path.name)


def _bench_on(
    args: Any,
    tmp: Path,
    home: Path,
    folder: Path,
    users: list[str],
    n_items: int,
    runs: int,
    seconds: float,
) -> int:
    items = json.loads((folder / "items.json").read_text(encoding="utf-8"))
    live = users[-LIVE_USERS:]
    known = users[:-LIVE_USERS]
    script = mix_script(tmp, known, live, items, args.pace_ms)
    env = dict(
        os.environ,
        RECSYS_HOME=str(home),
        RECSYS_API_KEYS=KEY,
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        REFERENCE_VERSION_DIR=str(folder),
    )
    recsys_bin = str(Path(sys.executable).with_name("recsys"))
    probe = f"/v1/users/{users[0]}/recommendations?k=10"
    results: dict[str, list[dict[str, Any]]] = {}
    offers_ready: dict[int, float] = {}
    settings = [(1, 1), (1, 16), (2, 16)]
    if args.only:
        settings = [(int(w[1:]), int(c[1:])) for w, c in [args.only.split()]]
    worker_counts = sorted({w for w, _ in settings})
    # the server compared with the reference: the real one, or in an A/A run another reference
    first = "reference B" if args.aa else "real"
    for workers in (1,) if args.smoke or args.alone_only else worker_counts:
        rp, fp = free_port(), free_port()
        if args.aa:
            compared = start_reference(rp, workers, env, probe)
        else:
            serve = [recsys_bin, "serve", "--port", str(rp), "--workers", str(workers)]
            compared = start([*serve, "--no-access-log"], env, rp, probe)
        ref = None
        try:
            if not args.aa:
                offers_ready[workers] = _wait_offers(rp)
            ref = start_reference(fp, workers, env, probe)
            rounds = itertools.count()
            for c in () if args.alone_only else [c for w, c in settings if w == workers]:
                for _ in range(runs):
                    _prime(rp, live, items, next(rounds))  # the reference keeps no events
                    for name, port in ((first, rp), ("reference", fp)):
                        if args.pace_ms > 0:
                            # a timing connection sending back to back would be most of
                            # a paced load
                            run = wrk_run(port, script, c, seconds)
                        else:
                            with TypeSampler(port, known, live, items) as sampler:
                                run = wrk_run(port, script, c, seconds)
                            run.update(sampler.summary())
                        results.setdefault(f"{name} w{workers} c{c}", []).append(run)
            if workers == 1 and not args.only:  # the mix from one connection alone, per type
                for _ in range(runs):
                    _prime(rp, live, items, next(rounds))
                    for name, port in ((first, rp), ("reference", fp)):
                        with TypeSampler(port, known, live, items, mix=True) as sampler:
                            time.sleep(seconds)
                        results.setdefault(f"{name} w1 c1 alone", []).append(sampler.summary())
        finally:
            stop(compared)
            if ref is not None:
                stop(ref)
    rows = []
    med: dict[str, dict[str, float]] = {}
    for key, rs in results.items():
        med[key] = {
            m: statistics.median(r[m] for r in rs) for m in ("rps", "p50_ms", "p99_ms", "non_2xx")
        }
        m = med[key]
        rows.append(
            f"| {n_items:,} | {key} | {len(rs)} | {m['rps']:,.0f} | {m['p50_ms']:.3g} "
            f"| {m['p99_ms']:.3g} | {m['non_2xx']:.0f} |"
        )
    header = [
        "| items | server, workers, connections | runs | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for setting in ("w1 c1", "w1 c1 alone", "w1 c16", "w2 c16"):
        r, f = med.get(f"{first} {setting}"), med.get(f"reference {setting}")
        if r and f:
            ratios.append(
                f"{setting}: throughput {r['rps'] / f['rps']:.2f}x, "
                f"p99 {r['p99_ms'] / f['p99_ms']:.2f}x"
            )
    per_type = [
        "| server, workers, connections | " + " | ".join(f"{t} p50 / p99 ms" for t in TYPES) + " |",
        "|---|" + "---|" * len(TYPES),
    ]
    for key, rs in results.items():
        cells = []
        for t in TYPES:
            have = [r for r in rs if f"{t}_p50" in r]
            if not have:
                cells.append("-")
                continue
            p50 = statistics.median(r[f"{t}_p50"] for r in have)
            p99 = statistics.median(r[f"{t}_p99"] for r in have)
            cells.append(f"{p50:.3g} / {p99:.3g}")
        per_type.append(f"| {key} | " + " | ".join(cells) + " |")
    text = (
        "\n".join([*header, *rows])
        + "\n\nPer request type (one extra connection timing each type in turn under the load;"
        + ' "c1 alone": the mix from one Python client, the only connection; medians over the'
        + " runs):\n\n"
        + "\n".join(per_type)
        + f"\n\nRatios {first}/reference: "
        + "; ".join(ratios)
        + "\n"
        + ("" if args.aa else f"\nOffer context built {offers_ready} s after start (by workers).\n")
    )
    # every run's figures beside the medians: runs on one server differ (e.g. a live customer's
    # first list against a kept one), and a median hides which
    write_report(out_dir(args), "mixed", text, {"runs": results, "offers_ready_s": offers_ready})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
