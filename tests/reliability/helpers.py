"""Shared pieces of the reliability tests: real subprocesses, a small trained store, checksums.

Every process started here is a child of the test and is killed in a ``finally`` (or by the
context manager that started it); servers bind 127.0.0.1 on a free port only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from recsys.store.base import EventStore

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

#: A training config that fits in about a second: the serving model is ``buy_again`` blended by
#: nothing, so tests that train a real version stay fast on two shared cores.
FAST_TRAINING_TOML = """\
default_model = "buy_again"
threads = 1

[evaluation]
enabled = false

[models.popular]
enabled = true

[models.buy_again]
enabled = true
"""

#: A real-model configuration with every list a shop page shows (personal, popular, trending,
#: bought together, often viewed with) that still trains in seconds.
SHOP_TRAINING_TOML = """\
default_model = "buy_again"
threads = 1

[evaluation]
enabled = false

[models.popular]
enabled = true

[models.trending]
enabled = true

[models.buy_again]
enabled = true

[models.bought_together]
model = "cooccurrence"
params = { source = "basket" }

[models.viewed_with]
model = "cooccurrence"
params = { source = "session" }
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``recsys`` subprocess: this one, with its own RECSYS_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env.update(
        {
            "RECSYS_HOME": str(home),
            "PYTHONPATH": str(ROOT),
            # one BLAS thread each: the tests share two cores with other work
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: Mapping[str, str], *, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``recsys ARGS`` in a subprocess and wait (bounded) for it."""
    return subprocess.run(
        [PYTHON, "-m", "recsys.cli", *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn_cli(args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``recsys ARGS`` in the background, stdout and stderr into ``log``."""
    fh = open(log, "ab")  # noqa: SIM115 - the child owns it; closed with the process
    try:
        return subprocess.Popen(
            [PYTHON, "-m", "recsys.cli", *args],
            env=dict(env),
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        fh.close()


def kill(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Stop one child process (by its pid) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


class Server:
    """A real ``recsys serve`` (uvicorn) subprocess on 127.0.0.1."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env = dict(env)
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the process and wait until ``/healthz`` answers."""
        self.proc = spawn_cli(["serve", "--port", str(self.port)], self.env, self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start within {timeout} s:\n{self.output()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the process (SIGKILL by default: no shutdown handler runs)."""
        if self.proc is not None:
            kill(self.proc, sig)
            self.proc = None

    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def running_server(env: Mapping[str, str], log: Path) -> Iterator[Server]:
    """A started :class:`Server`, killed when the block ends whatever happens."""
    server = Server(env, log)
    try:
        server.start()
        yield server
    finally:
        server.kill()


def events_checksum(store: EventStore) -> str:
    """sha256 over every stored event row, in the store's order: equal means byte-identical."""
    digest = hashlib.sha256()
    for row in store.read_events().rows():
        digest.update(repr(tuple(row)).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def snapshot(store: EventStore) -> tuple[Any, str, int, int]:
    """What must not change after a refused write: stats, event checksum, catalogue, customers."""
    return (
        store.stats(),
        events_checksum(store),
        len(store.read_items()),
        len(store.read_customers()),
    )


def write_fast_config(folder: Path) -> Path:
    """Write :data:`FAST_TRAINING_TOML` into ``folder``; return its path."""
    path = folder / "fast.toml"
    path.write_text(FAST_TRAINING_TOML, encoding="utf-8")
    return path
