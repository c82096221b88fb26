"""Writing config files (recsys.config.write_config_file) and reading them back."""

from __future__ import annotations

import json
import math
import tempfile
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.config import dumps_config, read_config_file, write_config_file
from recsys.errors import ConfigError
from recsys.files import write_atomic

WHEN = datetime(2026, 11, 1, 12, 30, 15, 250_000, tzinfo=UTC)

# TOML offsets are whole minutes; a Python timezone may have seconds
offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
aware = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    aware,
)
keys = st.text(min_size=1, max_size=12)
# arrays hold scalars or tables (TOML arrays are heterogeneous since 1.0, tomli_w writes them)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)
tables = st.dictionaries(keys, values, max_size=5)


@settings(max_examples=60, deadline=None)
@given(tables, st.sampled_from([".toml", ".json"]))
def test_read_after_write_is_identity_on_toml_values(data: dict[str, Any], suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"c{suffix}"
        write_config_file(path, data, header="a header")
        back = read_config_file(path)
    if suffix == ".json":  # JSON has no datetimes: they come back as ISO strings
        data = json.loads(json.dumps(data, default=lambda d: d.isoformat()))
    assert back == data


def test_toml_datetimes_are_datetimes_not_strings(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    write_config_file(path, {"start": WHEN, "rows": [{"at": WHEN}]})
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    assert isinstance(raw["start"], datetime)
    assert raw["start"] == WHEN and raw["rows"][0]["at"] == WHEN


@pytest.mark.parametrize("toml", [True, False])
def test_none_values_of_tables_are_left_out(toml: bool) -> None:
    text = dumps_config(
        {"a": 1, "b": None, "t": {"c": None, "d": "x"}, "l": [{"e": None}]}, toml=toml
    )
    data = tomllib.loads(text) if toml else json.loads(text)
    assert data == {"a": 1, "t": {"d": "x"}, "l": [{}]}


def test_header_is_a_toml_comment_and_json_has_none() -> None:
    toml = dumps_config({"a": 1}, toml=True, header="Written by tests.\nSecond line.")
    assert toml.startswith("# Written by tests.\n# Second line.\n")
    assert tomllib.loads(toml) == {"a": 1}
    assert json.loads(dumps_config({"a": 1}, toml=False, header="ignored")) == {"a": 1}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.inf, "cannot write t.x = inf to TOML"),
        (math.nan, "cannot write t.x = nan to TOML"),
        ([1, None], "cannot write t.x.1, a NoneType, to TOML"),
        (object(), "cannot write t.x, a object, to TOML"),
    ],
)
def test_what_toml_cannot_hold_is_a_config_error_naming_the_key(value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        dumps_config({"t": {"x": value}}, toml=True)


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    write_config_file(path, {"a": 1})
    with pytest.raises(ConfigError):
        write_config_file(path, {"a": math.inf})
    assert read_config_file(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]


def test_write_atomic_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "f.txt"
    write_atomic(path, "one\n")
    write_atomic(path, "twö\n")
    assert path.read_text(encoding="utf-8") == "twö\n"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]


def test_write_atomic_cleans_up_when_the_text_cannot_be_written(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    write_atomic(path, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "\udcff")  # a lone surrogate has no UTF-8 form
    assert path.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_validators_message_is_shown_in_its_own_words() -> None:
    from pydantic import field_validator, model_validator

    from recsys.config import StrictModel, validate

    class Shop(StrictModel):
        share: float = 0.5
        low: int = 0
        high: int = 1

        @field_validator("share")
        @classmethod
        def _a_share(cls, value: float) -> float:
            if not 0 <= value <= 1:
                raise ValueError("is a share, between 0 and 1")
            return value

        @model_validator(mode="after")
        def _ordered(self) -> Shop:
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) is above high ({self.high})")
            return self

    with pytest.raises(ConfigError) as info:
        validate(Shop, {"share": 2}, "shop.toml")
    assert str(info.value) == "shop.toml: 'share': is a share, between 0 and 1 (got 2)"
    with pytest.raises(ConfigError) as info:
        validate(Shop, {"low": 3}, "shop.toml")
    assert str(info.value) == "shop.toml: low (3) is above high (1)"
    with pytest.raises(ConfigError) as info:
        validate(Shop, {"low": "x", "colour": 1}, "shop.toml")
    message = str(info.value)
    assert "'low': Input should be a valid integer" in message
    assert "unknown key 'colour'" in message


def test_a_bad_element_is_named_once_not_again_as_a_short_list() -> None:
    from pydantic import Field

    from recsys.config import StrictModel, validate

    class Variant(StrictModel):
        share: float

    class Test(StrictModel):
        variants: tuple[Variant, ...] = Field(min_length=1)

    with pytest.raises(ConfigError) as info:
        validate(Test, {"variants": [{"share": "half"}]}, "x.toml")
    message = str(info.value)
    assert message.startswith("x.toml: 'variants.0.share': Input should be a valid number")
    assert "at least 1 item" not in message  # the list is short only because of that element
    with pytest.raises(ConfigError, match="'variants': Tuple should have at least 1 item"):
        validate(Test, {"variants": []}, "x.toml")
