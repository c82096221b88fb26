"""``make run`` is repeatable (issue 15): the first run loads, trains and serves; the next
loads and trains nothing and serves; when training fails, the current version still serves.

The quickstart runs for real, on a slice of the bundled sample in a temporary state folder,
with the virtualenv's stamp pointed at a fresh file so that make never reinstalls anything.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recsys.registry import Registry
from tests.reliability.helpers import ROOT, child_env, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make"),
]

SAMPLE = ROOT / "recsys" / "data" / "sample" / "online_retail_sample.csv.gz"
#: Rows of the sample used: enough for the default config to train in a few seconds.
ROWS = 4000


class Quickstart:
    """``make run`` against its own state folder and port."""

    def __init__(self, tmp: Path) -> None:
        self.home = tmp / "home"
        self.sample = tmp / "sample.csv"
        self.stamp = tmp / "installed"
        self.stamp.touch()  # newer than pyproject.toml: make sees the venv as set up
        self.log = tmp / "make.log"
        self.port = free_port()
        with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
            self.sample.write_text("".join(line for _, line in zip(range(ROWS), fh, strict=False)))

    def run(self) -> str:
        """Start ``make run``, wait until it serves, stop it; return what it printed."""
        start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            proc = subprocess.Popen(
                ["make", "--no-print-directory", "run", f"SAMPLE={self.sample}",
                 f"STAMP={self.stamp}", f"PORT={self.port}", "HOST=127.0.0.1"],
                cwd=ROOT, env=child_env(self.home), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 240
            while True:
                assert proc.poll() is None, f"make run exited {proc.returncode}:\n{self.output()}"
                assert time.monotonic() < deadline, f"not serving:\n{self.output()}"
                try:
                    r = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1)
                    if r.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        finally:
            # make and the server it started share one session: end that group (ours) only
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        return self.log.read_bytes()[start:].decode(errors="replace")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def versions(self) -> list[str]:
        return Registry(self.home / "models").version_names()


@pytest.fixture
def quickstart(tmp_path: Path) -> Iterator[Quickstart]:
    yield Quickstart(tmp_path)


def test_make_run_is_repeatable_and_always_ends_serving(quickstart: Quickstart) -> None:
    first = quickstart.run()
    assert "rows read" in first and "promoted     yes" in first
    (version,) = quickstart.versions()

    second = quickstart.run()
    assert "rows read" not in second, "the sample was loaded again"
    assert f"model version {version} is up to date" in second
    assert quickstart.versions() == [version]

    # new data, but training fails (another trainer holds the registry lock): still serves
    with quickstart.sample.open("a") as fh:
        fh.write(
            "581587,22138,BAKING SET 9 PIECE RETROSPOT,3,2011-12-09 12:50:00,4.95,12680.0,France\n"
        )
    lock = os.open(quickstart.home / "models" / ".lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        third = quickstart.run()
    finally:
        os.close(lock)
    assert "rows read" in third
    assert "another training holds the registry lock" in third
    assert "serving the current one" in third
    assert quickstart.versions() == [version]
