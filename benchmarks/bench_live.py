"""How fast a live change reaches every worker of ``recsys serve --workers 2``.

A generated shop is trained (a fast configuration) and served by two worker processes. Each
trial changes live state through the API (an item out of stock, then back; a customer erased)
and then reads over fresh connections, which the kernel hands to either worker, until
``--confirm`` answers in a row reflect the change. The *delay* of a trial is the time from the
write's acknowledgement to the last answer that did not yet reflect it (0 when the first read
already did): the slowest worker's catch-up, as a client sees it.

A third kind of trial posts an event: a purchase of the first item of a customer's list (asked
with ``exclude_purchased=true``), whose next list must leave it out. Events are read from the
store on every request, so here the delay is expected to be 0 (the first read after the
acknowledgement reflects it); the table also gives the acknowledgement-to-answer time (the POST
and the next GET, end to end).

``python -m benchmarks.bench_live [--smoke] [--trials N] [--backend sqlite|postgresql]``
(PostgreSQL: ``RECSYS_TEST_DATABASE_URL`` names a server; a fresh schema is made and dropped).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import base_parser, out_dir

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"
H = {"X-API-Key": KEY}
TRAINING = """\
default_model = "buy_again"
threads = 1
[evaluation]
enabled = false
[models.popular]
enabled = true
[models.buy_again]
enabled = true
"""


def _cli(args: list[str], env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "recsys.cli", *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )


def _get(url: str) -> httpx.Response:
    with httpx.Client(timeout=10.0) as c:  # a fresh connection: either worker may answer
        return c.get(url)


def _delay(url: str, reflects: Callable[[dict[str, Any]], bool], confirm: int) -> float:
    """Seconds from now until the last stale answer, reading until ``confirm`` in a row
    reflect the change (30 s at most)."""
    start = time.perf_counter()
    last_stale = start
    in_a_row = 0
    while in_a_row < confirm:
        r = _get(url)
        if r.status_code == 200 and reflects(r.json()):
            in_a_row += 1
        else:
            in_a_row = 0
            last_stale = time.perf_counter()
        if time.perf_counter() - start > 30:
            raise RuntimeError(f"{url}: not reflected within 30 s")
    return last_stale - start


def _first_fresh(url: str, item: str) -> float:
    """Seconds one fresh read of ``url`` takes (it must already leave ``item`` out)."""
    started = time.perf_counter()
    body = _get(url).json()
    elapsed = time.perf_counter() - started
    if item in [i["item_id"] for i in body["items"]]:
        raise RuntimeError(f"{url}: still lists {item} after the purchase was acknowledged")
    return elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--confirm", type=int, default=20, help="fresh answers in a row")
    parser.add_argument("--refresh", type=float, default=0.5, help="RECSYS_LIVE_REFRESH_S")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args(argv)
    # the shop is this run's own and nothing reads it again (every run left one in /tmp)
    with tempfile.TemporaryDirectory(prefix="bench-live-") as work:
        return _bench(args, Path(work))


def _bench(args: argparse.Namespace, work: Path) -> int:
    trials = 3 if args.smoke else args.trials
    out = out_dir(args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env.update(
        RECSYS_HOME=str(work / "home"),
        RECSYS_API_KEYS=KEY,
        RECSYS_LIVE_REFRESH_S=str(args.refresh),
        OPENBLAS_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
    )
    schema = None
    if args.backend == "postgresql":
        import psycopg

        base = os.environ.get("RECSYS_TEST_DATABASE_URL")
        if not base:
            print("skipped: RECSYS_TEST_DATABASE_URL is not set")
            return 0
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        env["RECSYS_DATABASE_URL"] = f"{base}?options=-csearch_path%3D{schema}"
    data = work / "data"
    _cli(["generate", "--users", "500", "--items", "200", "--out", str(data)], env)
    _cli(["ingest", str(data / "events.csv.gz"), "--catalog", str(data / "catalog.csv")], env)
    (work / "train.toml").write_text(TRAINING, encoding="utf-8")
    _cli(["train", "--config", str(work / "train.toml")], env)
    port = 18000 + os.getpid() % 1000
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "recsys.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    stock: list[float] = []
    erase: list[float] = []
    event: list[float] = []
    event_round_trip: list[float] = []
    event_post: list[float] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if _get(f"{url}/readyz").status_code == 200:
                    break
            time.sleep(0.2)
        users = [f"u{n:04d}" for n in range(500)]
        personal = [
            u
            for u in users[: trials * 4]
            if _get(f"{url}/v1/users/{u}/recommendations?k=3").json()["fallback"] is None
        ]
        for t in range(trials):
            top = _get(f"{url}/v1/popular?k=1").json()["items"][0]["item_id"]
            with httpx.Client(timeout=10.0) as c:
                c.patch(f"{url}/v1/items/{top}", json={"in_stock": False}, headers=H)
            stock.append(
                _delay(
                    f"{url}/v1/popular?k=5",
                    lambda b, top=top: top not in [i["item_id"] for i in b["items"]],
                    args.confirm,
                )
            )
            with httpx.Client(timeout=10.0) as c:
                c.patch(f"{url}/v1/items/{top}", json={"in_stock": True}, headers=H)
            if t < len(personal):
                user = personal[t]
                with httpx.Client(timeout=10.0) as c:
                    c.delete(f"{url}/v1/users/{user}", headers=H)
                erase.append(
                    _delay(
                        f"{url}/v1/users/{user}/recommendations?k=3",
                        lambda b: b["fallback"] == "popular",
                        args.confirm,
                    )
                )
            buyer = users[trials * 4 + t]
            listed = f"{url}/v1/users/{buyer}/recommendations?k=3&exclude_purchased=true"
            first = _get(listed).json()["items"][0]["item_id"]
            body = [
                {
                    "event_id": f"live-bench-{t}-{uuid.uuid4().hex}",
                    "user_id": buyer,
                    "item_id": first,
                    "event_type": "purchase",
                    "timestamp": time.time(),
                }
            ]
            started = time.perf_counter()
            with httpx.Client(timeout=10.0) as c:
                c.post(f"{url}/v1/events", json=body, headers=H).raise_for_status()
            acked = time.perf_counter()
            event.append(
                _delay(
                    listed,
                    lambda b, first=first: first not in [i["item_id"] for i in b["items"]],
                    args.confirm,
                )
            )
            # end to end: the POST, then one fresh read that reflects it
            event_post.append(acked - started)
            event_round_trip.append(acked - started + _first_fresh(listed, first))
            time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if schema is not None:
            import psycopg

            with psycopg.connect(os.environ["RECSYS_TEST_DATABASE_URL"], autocommit=True) as c:
                c.execute(f"DROP SCHEMA {schema} CASCADE")

    def summary(xs: list[float]) -> dict[str, float]:
        return {
            "trials": len(xs),
            "median_ms": round(statistics.median(xs) * 1000, 1) if xs else float("nan"),
            "max_ms": round(max(xs) * 1000, 1) if xs else float("nan"),
        }

    result = {
        "backend": args.backend,
        "workers": 2,
        "refresh_s": args.refresh,
        "confirm": args.confirm,
        "stock": summary(stock),
        "erasure": summary(erase),
        "event": summary(event),
        "event_post": summary(event_post),
        "event_post_then_list": summary(event_round_trip),
    }
    print(json.dumps(result, indent=2))
    (out / f"live_{args.backend}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
