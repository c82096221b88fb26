"""Configuration as validated data: frozen pydantic models loaded from TOML or JSON.

Unknown keys are rejected by name, so a typo in a config file fails loudly instead of
silently falling back to a default (the RecBole counter-example in STYLE.md).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from recsys.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config: frozen, and unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line naming each bad key of ``exc`` and what is wrong with it."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{where}'")
        else:
            value = err.get("input")
            shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
            parts.append(f"'{where}': {err['msg']}{shown}")
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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
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
