"""The command line on a bad day (issue 15): each mistake is one clear line on stderr, exit
status 2, and nothing stored.

The commands run as subprocesses under an address-space limit, so that a reader that still
read ``/dev/zero`` whole would fail fast with ``MemoryError`` instead of eating the machine.
"""

from __future__ import annotations

import resource
import socket
import subprocess
from pathlib import Path

import pytest

from tests.reliability.helpers import PYTHON, ROOT, child_env

EVENTS = "user_id,item_id,event_type,timestamp\nu1,i1,view,2024-05-01T10:00:00Z\n"
#: Bytes of address space a command may map: ample for the command, a wall for /dev/zero.
MEMORY_LIMIT = 3 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def recsys(
    home: Path, *args: str, module: str = "recsys.cli", **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` on the state folder ``home``, with ``env`` added."""
    return subprocess.run(
        [PYTHON, "-m", module, *args],
        env=child_env(home, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_limit_memory,
    )


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


def assert_nothing_stored(home: Path) -> None:
    db = home / "recsys.db"
    if not db.exists():
        return
    from recsys.store.sqlite import SQLiteStore

    store = SQLiteStore(db)
    try:
        assert store.count_events() == 0
    finally:
        store.close()


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(EVENTS)
    return path


def test_errors_out_naming_a_folder_fails_before_the_load(tmp_path: Path, events: Path) -> None:
    home = tmp_path / "home"
    result = recsys(home, "ingest", str(events), "--errors-out", str(tmp_path))
    assert_one_clear_error(result, "--errors-out", "directory")
    assert_nothing_stored(home)
    missing = tmp_path / "no" / "such" / "folder" / "rejected.csv"
    result = recsys(home, "ingest", str(events), "--errors-out", str(missing))
    assert_one_clear_error(result, "does not exist")
    assert_nothing_stored(home)
    # and a good path still works, after the load
    good = tmp_path / "rejected.csv"
    result = recsys(home, "ingest", str(events), "--errors-out", str(good))
    assert result.returncode == 0, result.stderr
    assert good.read_text().startswith("file,line,column,value,reason")


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--config", "/dev/zero"],
        ["offers", "validate", "/dev/zero"],
        ["campaigns", "run", "--date", "2011-12-01", "--promotions", "/dev/zero", "--dry-run"],
        ["recommend", "--users", "/dev/zero", "--k", "3", "--out", "out.csv"],
    ],
)
def test_a_device_given_as_a_file_is_one_line_not_a_memory_error(
    tmp_path: Path, args: list[str]
) -> None:
    home = tmp_path / "home"
    result = recsys(home, *args)
    assert_one_clear_error(result, "/dev/zero", "not a file")
    assert "MemoryError" not in result.stderr
    assert_nothing_stored(home)


@pytest.mark.parametrize("command", [["status"], ["models", "list"], ["ingest", "e.csv"]])
def test_a_state_folder_that_is_a_file_is_one_line(tmp_path: Path, command: list[str]) -> None:
    """It was "File exists" with exit 1 from some commands, "Not a directory" from others."""
    home = tmp_path / "home"
    home.write_text("not a folder")
    result = recsys(home, *command)
    assert_one_clear_error(result, f"RECSYS_HOME: {home} is not a folder")
    assert home.read_text() == "not a folder"


def test_a_config_larger_than_the_bound_is_refused(tmp_path: Path) -> None:
    from recsys.config import MAX_CONFIG_BYTES

    big = tmp_path / "big.toml"
    with big.open("wb") as fh:
        fh.truncate(MAX_CONFIG_BYTES + 1)  # sparse: costs no disk
    result = recsys(tmp_path / "home", "offers", "validate", str(big))
    assert_one_clear_error(result, "larger than")


def test_an_executable_is_called_binary(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = recsys(home, "ingest", PYTHON)
    assert_one_clear_error(result, "binary")
    assert "UTF-16" not in result.stderr
    assert_nothing_stored(home)


def test_utf16_encoding_on_a_utf8_file_is_one_clear_error(tmp_path: Path, events: Path) -> None:
    home = tmp_path / "home"
    longer = tmp_path / "longer.csv"
    longer.write_text(EVENTS + "u2,i2,view,2024-05-01T10:00:00Z\n")
    for path in (events, longer):
        result = recsys(home, "ingest", str(path), "--encoding", "utf-16")
        assert_one_clear_error(result, "utf-16")
        assert "internal error" not in result.stderr
    assert_nothing_stored(home)


def test_a_full_disk_is_one_line_not_an_internal_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from recsys import cli

    def full(args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "/state/models/x.npz")

    monkeypatch.setattr(cli, "_check_whole_files", lambda args: None)
    parser = cli.build_parser()
    args = parser.parse_args(["status"])
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args, full))
    assert cli.main(["status"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: No space left on device (/state/models/x.npz)"]


class _Fixed:
    """A parser that returns prepared arguments with a given handler."""

    def __init__(self, parser: object, args: object, handler: object) -> None:
        self.args = args
        self.args.handler = handler  # type: ignore[attr-defined]

    def parse_args(self, argv: object) -> object:
        return self.args


@pytest.mark.parametrize(
    ("variable", "text", "workers", "needle"),
    [
        ("RECSYS_RULES_FILE", "max_per_catgory = 3\n", "2", "unknown key 'max_per_catgory'"),
        ("RECSYS_EXPERIMENTS_FILE", "this = = not toml\n", "2", "not valid TOML"),
        ("RECSYS_EXPERIMENTS_FILE", "this = = not toml\n", "1", "not valid TOML"),
        ("RECSYS_PROMOTIONS_FILE", '[[promotions]]\nid = "x"\n', "2", "offer 'x'"),
    ],
)
def test_serve_refuses_a_bad_file_before_starting_workers(
    tmp_path: Path, variable: str, text: str, workers: str, needle: str
) -> None:
    """Each worker reads these files as it starts: one that failed there was started again and
    again by uvicorn's supervisor (rules, two workers: no exit at all), or the server stopped
    with a traceback, and with two workers with status 0."""
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [PYTHON, "-m", "recsys.cli", "serve", "--port", "1", "--workers", workers],
        env=child_env(tmp_path / "home", **{variable: str(bad)}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_clear_error(result, str(bad), needle)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_store_it_cannot_open_before_starting_workers(
    tmp_path: Path, workers: str
) -> None:
    """PostgreSQL down at start: each worker failed in its lifespan with a traceback of about
    160 lines, and with two workers the server exited 0, which a service manager reads as a
    clean stop (it does not restart it)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # nothing listens there once the socket closes
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    result = recsys(
        tmp_path / "home", "serve", "--port", "1", "--workers", workers, RECSYS_DATABASE_URL=url
    )
    assert_one_clear_error(result, "cannot connect to PostgreSQL", str(port))


def test_python_dash_m_recsys_is_the_command_and_status_creates_no_store(
    tmp_path: Path, events: Path
) -> None:
    """Two first-time users reached for ``python -m recsys`` where the script was not on
    their PATH (it said "No module named recsys.__main__"). ``status`` on a state folder with
    no store said "0 events" and created one: a mistyped RECSYS_HOME read as an empty shop."""
    home = tmp_path / "home"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return recsys(home, *args, module="recsys")

    assert_one_clear_error(run("status"), f"no store at {home / 'recsys.db'}: nothing loaded yet")
    assert not home.exists()
    assert run("ingest", str(events)).returncode == 0
    result = run("status")
    assert result.returncode == 0, result.stderr
    assert "events_by_type" not in result.stdout and "events by type     view=1" in result.stdout
    # a current version missing on disk (a server answers 409) is said before a server starts
    (home / "models").mkdir(exist_ok=True)
    (home / "models" / "CURRENT").write_text("20261101T000000Z-abcdef\n")
    result = run("status")
    assert "20261101T000000Z-abcdef (missing on disk: `recsys models rollback`" in result.stdout


def test_serve_refuses_a_port_in_use_in_one_line(tmp_path: Path) -> None:
    """uvicorn logged "[Errno 98] Address already in use" after starting the workers, and
    exited 3."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = recsys(tmp_path / "home", "serve", "--port", str(port), "--workers", "2")
    assert_one_clear_error(result, f"--port: cannot listen on 127.0.0.1:{port}: ")
