"""Training time against the shop's size, and the Spark engine against the local one.

Each case generates a synthetic shop (``recsys generate``: power-law popularity, baskets,
repeat buying), loads it into a fresh SQLite store and runs ``recsys train`` under
``/usr/bin/time -v`` (wall seconds, CPU seconds, the peak resident memory of the process or of
its largest child: with ``--engine spark`` that is the JVM). The stage timings come from the
published manifest.

Configurations:

* ``default``: ``training/configs/default.toml`` (the hybrid serves; evaluation on);
* ``comparable``: the models the Spark engine trains (popular, trending, buy_again, als,
  bought_together; ``default_model = "als"``; no evaluation unless ``--evaluate``: the rows
  measured before the Spark engine evaluated had none), so local and Spark do the same work;
* ``hybrid``: ``comparable`` plus the default configuration's hybrid, which serves (on Spark
  its ranker learns from a sample of customers, all of them up to its
  ``max_ranker_customers``).

Run: ``nice -n 10 .venv/bin/python -m benchmarks.bench_train_scale --events 100000 --items
10000 --users 10000 [--engine local|spark] [--config default|comparable|hybrid]
[--evaluate]``; prints one row.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

COMPARABLE = """\
default_model = "als"
threads = 0
[evaluation]
enabled = false
[models.popular]
[models.trending]
[models.buy_again]
[models.als]
params = { factors = 64, iterations = 15 }
[models.bought_together]
model = "cooccurrence"
params = { source = "basket" }
"""


def hybrid_config() -> str:
    """:data:`COMPARABLE` with the default configuration's ``[models.hybrid]`` serving."""
    default = Path(__file__).resolve().parents[1] / "training/configs/default.toml"
    section = re.search(r"^\[models\.hybrid\]\n(?:[^\[].*\n|\n)*", default.read_text(), re.M)
    assert section is not None, "training/configs/default.toml has no [models.hybrid]"
    return COMPARABLE.replace('default_model = "als"', 'default_model = "hybrid"') + section[0]


def _tree_rss_kib(root: int) -> int:
    """Resident memory of ``root`` and all its descendants (KiB), from /proc: the JVM that
    PySpark starts is a grandchild that GNU time does not wait for, so it never counts it."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid = int(entry.name)
        children.setdefault(int(fields.get("PPid", "0").strip() or 0), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        try:
            stat = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            _CPU_TICKS[pid] = max(_CPU_TICKS.get(pid, 0), int(stat[11]) + int(stat[12]))
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(children.get(pid, []))
    return total


#: CPU clock ticks (user + system) last seen per process of the measured tree.
_CPU_TICKS: dict[int, int] = {}


def _run(cmd: list[str], env: dict[str, str]) -> tuple[str, dict[str, float]]:
    """Run ``cmd`` under GNU time; its stderr and the measured wall, CPU and peak memory
    (GNU time's, and the peak of the whole process tree sampled every 0.5 s)."""
    import time

    # the child's output goes to files, not pipes: Spark's JVM logs enough warnings to fill a
    # pipe's buffer while this loop samples memory, and then blocks on its next line
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as log:
        proc_ = subprocess.Popen(["/usr/bin/time", "-v", *cmd], env=env, stdout=out, stderr=log)
        tree_peak = 0
        while proc_.poll() is None:
            tree_peak = max(tree_peak, _tree_rss_kib(proc_.pid))
            time.sleep(0.5)
        log.seek(0)
        err = log.read()
    if proc_.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc_.returncode}):\n{err[-3000:]}")

    def grab(label: str) -> float:
        found = re.search(rf"{re.escape(label)}: ([0-9:.]+)", err)
        if found is None:
            return float("nan")
        text = found.group(1)
        if ":" in text:  # h:mm:ss or m:ss.ss
            parts = [float(p) for p in text.split(":")]
            return sum(p * 60**i for i, p in enumerate(reversed(parts)))
        return float(text)

    return err, {
        "wall_s": grab("Elapsed (wall clock) time (h:mm:ss or m:ss)"),
        "cpu_s": grab("User time (seconds)") + grab("System time (seconds)"),
        "peak_mib": grab("Maximum resident set size (kbytes)") / 1024,
        "tree_peak_mib": tree_peak / 1024,
        # sampled: the last 0.5 s of each process may be missed
        "tree_cpu_s": sum(_CPU_TICKS.values()) / os.sysconf("SC_CLK_TCK"),
    }


def prepare_store(home: Path, *, events: int, items: int, users: int) -> dict[str, str]:
    """Generate the synthetic shop and ingest it into ``home``'s store, unless done before;
    return the environment that points ``recsys`` at it."""
    recsys = str(Path(sys.executable).with_name("recsys"))
    env = {**os.environ, "RECSYS_HOME": str(home), "OPENBLAS_NUM_THREADS": "1"}
    if not (home / "loaded").exists():
        shop = home / "shop"
        subprocess.run(
            [recsys, "generate", "--users", str(users), "--items", str(items),
             "--events", str(events), "--seed", "1", "--days", "180", "--out", str(shop),
             "--format", "parquet"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [recsys, "ingest", *sorted(str(p) for p in shop.glob("events*"))],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        (home / "loaded").write_text("")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--engine", choices=("local", "spark"), default="local")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--config", choices=("default", "comparable", "hybrid"), default="default")
    parser.add_argument("--home", type=Path, help="reuse this state folder's store")
    parser.add_argument(
        "--evaluate", action="store_true", help="comparable, hybrid: measure the holdout too"
    )
    args = parser.parse_args()
    recsys = str(Path(sys.executable).with_name("recsys"))
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    env = prepare_store(home, events=args.events, items=args.items, users=args.users)
    cmd = [recsys, "train", "--no-promote"]
    if args.config != "default":
        config = home / f"{args.config}.toml"
        text = COMPARABLE if args.config == "comparable" else hybrid_config()
        if args.evaluate:
            text = text.replace("[evaluation]\nenabled = false", "[evaluation]\nenabled = true")
        config.write_text(text)
        cmd += ["--config", str(config)]
    if args.engine == "spark":
        cmd += ["--engine", "spark", "--master", args.master]
    _, measured = _run(cmd, env)
    versions = sorted((home / "models" / "versions").iterdir())
    manifest: dict[str, Any] = json.loads((versions[-1] / "manifest.json").read_text())
    row = {
        "events": args.events,
        "items": args.items,
        "users": args.users,
        "engine": args.engine,
        "config": args.config + (" +evaluate" if args.evaluate else ""),
        **{k: round(v, 1) for k, v in measured.items()},
        "stages": manifest.get("timings"),
        "skipped": sorted(manifest.get("skipped_models", {})),
        "metrics": {
            m: {k: v for k, v in vals.items() if k in ("recall@10", "ndcg@10")}
            for m, vals in (manifest.get("metrics") or {}).items()
        },
        "home": str(home),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
