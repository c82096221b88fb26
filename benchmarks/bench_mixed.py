"""Mixed traffic: the real API against the bare reference under a shop's request mix (wrk).

Issue 16's mix, per request: 65% recommendations for known customers with nothing new since
training, 20% for customers who posted events in the last minute (the live path: fold-in), 5%
for unknown customers, 5% offers, 5% ``POST /v1/events`` (one view of a live customer). The
reference (``benchmarks/reference_app.py``) answers every read by exact ALS scoring, unknown
customers from a fixed list, and accepts events without storing them. Same version, same
machine, runs alternating; ``OPENBLAS_NUM_THREADS=1`` for both.

``python -m benchmarks.bench_mixed [--smoke] [--items 1e5] [--duration 5] [--runs 3]``
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_serving import free_port, start, stop, train_version, wrk_run
from benchmarks.common import base_parser, out_dir

KEY = "bench-key"
LIVE_USERS = 500


def mix_script(folder: Path, known: list[str], live: list[str], items: list[str]) -> Path:
    """The wrk Lua script drawing each request from the mix."""

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
""",
        encoding="utf-8",
    )
    return path


def _prime(port: int, live: list[str], items: list[str]) -> None:
    """Every live customer posts one event before the runs (their next list is live)."""
    with httpx.Client(timeout=30.0) as c:
        for j, user in enumerate(live):
            body = [
                {
                    "event_id": f"prime-{port}-{j}",
                    "user_id": user,
                    "item_id": items[j % len(items)],
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
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("skipped: wrk is not installed (Debian's package wrk)")
        return 0
    n_items = 2000 if args.smoke else int(args.items)
    runs = 1 if args.smoke else args.runs
    seconds = 2.0 if args.smoke else args.duration
    tmp = Path(tempfile.mkdtemp(prefix="bench-mixed-"))
    home = tmp / "home"
    folder, users = train_version(home, n_items, n_items, 64)
    items = json.loads((folder / "items.json").read_text(encoding="utf-8"))
    live = users[-LIVE_USERS:]
    known = users[:-LIVE_USERS]
    script = mix_script(tmp, known, live, items)
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
    for workers in (1,) if args.smoke else (1, 2):
        rp, fp = free_port(), free_port()
        real = start(
            [recsys_bin, "serve", "--port", str(rp), "--workers", str(workers), "--no-access-log"],
            env,
            rp,
            probe,
        )
        ref = None
        try:
            offers_ready[workers] = _wait_offers(rp)
            _prime(rp, live, items)
            ref = start(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "benchmarks.reference_app:app_from_env",
                    "--port",
                    str(fp),
                    "--workers",
                    str(workers),
                    "--log-level",
                    "warning",
                ],
                env,
                fp,
                probe,
            )
            for c in (1, 16) if workers == 1 else (16,):
                for _ in range(runs):
                    for name, port in (("real", rp), ("reference", fp)):
                        results.setdefault(f"{name} w{workers} c{c}", []).append(
                            wrk_run(port, script, c, seconds)
                        )
        finally:
            stop(real)
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
    for setting in ("w1 c1", "w1 c16", "w2 c16"):
        r, f = med.get(f"real {setting}"), med.get(f"reference {setting}")
        if r and f:
            ratios.append(
                f"{setting}: throughput {r['rps'] / f['rps']:.2f}x, "
                f"p99 {r['p99_ms'] / f['p99_ms']:.2f}x"
            )
    text = (
        "\n".join([*header, *rows])
        + "\n\nRatios real/reference: "
        + "; ".join(ratios)
        + f"\n\nOffer context built {offers_ready} s after start (by workers).\n"
    )
    print(text)
    (out_dir(args) / "mixed.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
