"""``recsys.files``: the output check every file-writing command runs before its work."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.errors import ConfigError
from recsys.files import check_output_file


def test_a_file_that_can_be_written_is_accepted(tmp_path: Path) -> None:
    assert check_output_file("--out", str(tmp_path / "r.CSV"), (".csv",)) == tmp_path / "r.CSV"
    existing = tmp_path / "r.md"
    existing.write_text("old")
    assert check_output_file("--out", existing) == existing
    assert existing.read_text() == "old"  # checked, not touched
    assert not (tmp_path / "r.CSV").exists()


@pytest.mark.parametrize(
    ("name", "suffixes", "needle"),
    [
        ("r.txt", (".csv", ".parquet"), "--out {path}: must end in .csv or .parquet"),
        ("no/such/folder/r.csv", None, "--out {path}: folder {parent} does not exist"),
        (".", None, "--out {path}: is a directory"),
    ],
)
def test_a_file_that_cannot_be_written_is_refused(
    tmp_path: Path, name: str, suffixes: tuple[str, ...] | None, needle: str
) -> None:
    path = tmp_path / name
    with pytest.raises(ConfigError) as info:
        check_output_file("--out", path, suffixes)
    assert needle.format(path=path, parent=path.parent) in str(info.value)
    assert not (tmp_path / "no").exists()  # a missing folder is not created


def test_changing_a_file_excludes_every_other_change(tmp_path: Path) -> None:
    from recsys.errors import OverloadedError
    from recsys.files import changing

    path = tmp_path / "new" / "experiments.toml"
    # a second holder (another worker; here a second open in this process) waits, then is
    # told to try again
    with (
        changing(path),
        pytest.raises(OverloadedError, match="another process has been changing it"),
        changing(path, timeout=0.05),
    ):
        pass
    with changing(path, timeout=0.05):  # released
        pass
    assert not path.exists() and (path.parent / "experiments.toml.lock").exists()
