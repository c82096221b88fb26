"""Configuration as validated data: frozen pydantic models loaded from TOML or JSON.

Unknown keys are rejected by name, so a typo in a config file fails loudly instead of
silently falling back to a default (the RecBole counter-example in STYLE.md).

Files the library writes back (the experiments and promotions files the admin API edits) go
through :func:`write_config_file`: TOML by ``tomli_w`` or JSON by suffix, as
:func:`read_config_file` reads them, replaced atomically.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import tomli_w
from pydantic import BaseModel, ConfigDict, ValidationError

from recsys.errors import ConfigError, FileFormatError
from recsys.files import read_bytes_bounded, write_atomic

M = TypeVar("M", bound=BaseModel)

#: Largest config file read (training configs, promotions, experiments, rules): far above any
#: real one, and a bound on memory when the path names something else (``/dev/zero``).
MAX_CONFIG_BYTES = 16 * 1024 * 1024


class StrictModel(BaseModel):
    """Base for every config: frozen, and unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def error_message(err: Mapping[str, Any]) -> str:
    """The message of one of pydantic's error dicts; for a ``ValueError`` our validator
    raised, its own words, without pydantic's ``"Value error, "`` in front."""
    if err.get("type") == "value_error" and "error" in (err.get("ctx") or {}):
        return str(err["ctx"]["error"])
    return str(err.get("msg", "invalid"))


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line naming each bad key of ``exc`` and what is wrong with it."""
    parts = []
    errors = exc.errors()
    inner = {tuple(e["loc"][:i]) for e in errors for i in range(len(e["loc"]))}
    for err in errors:
        if err["type"] == "too_short" and tuple(err["loc"]) in inner:
            continue  # the bad element, already named, left the list short: not a 2nd fault
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{where}'")
            continue
        msg = error_message(err)
        if not where:
            # a check across keys (a model validator): its message says which keys
            parts.append(msg)
            continue
        value = err.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        parts.append(f"'{where}': {msg}{shown}")
    return f"{source}: " + "; ".join(parts)


def validate(model: type[M], data: Any, source: str) -> M:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` naming the bad keys."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source)) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON (anything else) file into a dict, with a clear error."""
    path = Path(path)
    try:
        text = read_bytes_bounded(path, MAX_CONFIG_BYTES).decode("utf-8")
    except FileFormatError as exc:
        raise ConfigError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read: not UTF-8 text ({exc.reason})") from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(text)
        data = json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ConfigError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table/object at the top level")
    return data


def load_config(model: type[M], path: str | Path) -> M:
    """Read and validate a config file in one step."""
    return validate(model, read_config_file(path), str(path))


def _is_toml(path: Path) -> bool:
    return path.suffix.lower() == ".toml"


def dumps_config(data: Mapping[str, Any], *, toml: bool, header: str | None = None) -> str:
    """``data`` as the text of a config file :func:`read_config_file` reads back.

    ``None`` values of tables are left out (TOML has no null; a missing key reads back as
    the model's default). Datetimes are written as TOML datetimes, or ISO 8601 strings in
    JSON, which pydantic parses back to the same instant.

    Parameters
    ----------
    data
        The top-level table.
    toml
        TOML (via ``tomli_w``) when true, else JSON indented by two spaces.
    header
        A comment written as the first line(s) of a TOML file (JSON has no comments).

    Raises
    ------
    ConfigError
        A value TOML cannot hold (a non-finite float, a ``None`` inside an array, an object
        that is not a scalar, datetime, array or table), naming its key.
    """
    plain = _without_none(data, "", toml=toml)
    if not toml:
        return json.dumps(plain, indent=2, default=_json_default) + "\n"
    try:
        text = tomli_w.dumps(plain)
    except (TypeError, ValueError) as exc:  # what _without_none lets through, e.g. a bad key
        raise ConfigError(f"cannot write to TOML: {exc}") from None
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + "\n" + text
    return text


def write_config_file(
    path: str | Path, data: Mapping[str, Any], *, header: str | None = None
) -> None:
    """Write ``data`` to ``path`` (TOML when it ends in ``.toml``, else JSON) atomically.

    The format follows the suffix as in :func:`read_config_file`; see :func:`dumps_config`
    for what is written and :func:`recsys.files.write_atomic` for how.
    """
    path = Path(path)
    write_atomic(path, dumps_config(data, toml=_is_toml(path), header=header))


def _without_none(value: Any, where: str, *, toml: bool) -> Any:
    if isinstance(value, Mapping):
        return {
            str(k): _without_none(v, f"{where}.{k}" if where else str(k), toml=toml)
            for k, v in value.items()
            if v is not None
        }
    if isinstance(value, list | tuple):
        return [_without_none(v, f"{where}.{i}", toml=toml) for i, v in enumerate(value)]
    if not toml:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"cannot write {where} = {value!r} to TOML")
    if not isinstance(value, bool | int | float | str | datetime | date):
        raise ConfigError(f"cannot write {where}, a {type(value).__name__}, to TOML")
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
