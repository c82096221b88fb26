"""The experiments file: which experiments exist, and admin changes written back atomically.

The file is ``RECSYS_EXPERIMENTS_FILE`` or ``$RECSYS_HOME/experiments.toml`` (TOML, or JSON when
its name ends in ``.json``), holding experiments as ``[[experiments]]`` tables (a file with one
experiment at the top level is read too). A missing file means no experiments.

:class:`ExperimentRegistry` keeps the validated definitions in memory;
:meth:`~ExperimentRegistry.put` and :meth:`~ExperimentRegistry.delete` rewrite the whole file
through a temporary file and an atomic rename, so a reader never sees half a file and a crash
leaves the old one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field

from recsys.errors import ConfigError, NotFoundError
from recsys.experiments.definitions import Experiment, experiment_from_dict, load_experiments
from recsys.settings import Settings

#: File name under ``RECSYS_HOME`` when ``RECSYS_EXPERIMENTS_FILE`` is unset.
DEFAULT_FILE = "experiments.toml"


class ExperimentSettings(Settings):
    """Settings of the experiment commands (``RECSYS_EXPERIMENTS_FILE``)."""

    experiments_file: Path | None = Field(
        default=None, description="Experiments TOML/JSON (default: $RECSYS_HOME/experiments.toml)."
    )


def experiments_path(settings: Settings) -> Path:
    """The experiments file the settings point at."""
    explicit = getattr(settings, "experiments_file", None)
    return Path(explicit) if explicit else settings.home / DEFAULT_FILE


class ExperimentRegistry:
    """Experiments loaded from one file; changes are persisted to it atomically.

    Parameters
    ----------
    path
        The experiments file (it need not exist yet).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._experiments: tuple[Experiment, ...] = ()

    def load(self) -> ExperimentRegistry:
        """(Re)read the file; a missing file is no experiments. Returns ``self``."""
        found = load_experiments(self.path) if self.path.exists() else ()
        with self._lock:
            self._experiments = tuple(found)
        return self

    def all(self) -> tuple[Experiment, ...]:
        """Every experiment, in file order."""
        return self._experiments

    def get(self, name: str) -> Experiment:
        """One experiment by name; :class:`~recsys.errors.NotFoundError` naming the file."""
        for exp in self._experiments:
            if exp.name == name:
                return exp
        have = ", ".join(e.name for e in self._experiments) or "none"
        raise NotFoundError(f"{self.path}: no experiment named {name!r} (has: {have})")

    def running(self, now: datetime) -> tuple[Experiment, ...]:
        """The experiments whose window holds ``now``, in file order."""
        return tuple(e for e in self._experiments if e.is_running(now))

    def put(self, data: Experiment | Mapping[str, Any], name: str | None = None) -> Experiment:
        """Add or replace an experiment and write the file.

        Parameters
        ----------
        data
            A definition, or a mapping validated as one (errors name the field).
        name
            When given, it must equal the definition's name (the admin URL's name).
        """
        exp = data if isinstance(data, Experiment) else experiment_from_dict(dict(data), "request")
        if name is not None and exp.name != name:
            raise ConfigError(
                f"request: field 'name' is {exp.name!r} but the URL names experiment {name!r}"
            )
        with self._lock:
            current = list(self._experiments)
            for i, old in enumerate(current):
                if old.name == exp.name:
                    current[i] = exp
                    break
            else:
                current.append(exp)
            self._write(current)
            self._experiments = tuple(current)
        return exp

    def delete(self, name: str) -> Experiment:
        """Remove an experiment and write the file; returns what was removed."""
        with self._lock:
            current = list(self._experiments)
            for i, old in enumerate(current):
                if old.name == name:
                    del current[i]
                    self._write(current)
                    self._experiments = tuple(current)
                    return old
        self.get(name)  # raises NotFoundError naming the file and what it has
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, experiments: list[Experiment]) -> None:
        docs = [_plain(e) for e in experiments]
        if self.path.suffix.lower() == ".json":
            text = json.dumps({"experiments": docs}, indent=2, default=_json_default) + "\n"
        else:
            text = to_toml(docs)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _plain(exp: Experiment) -> dict[str, Any]:
    """The definition as written by a person: defaults left out, datetimes kept."""
    return exp.model_dump(mode="python", exclude_defaults=True, exclude_none=True) | {
        "name": exp.name,
        "salt": exp.salt,
        "start": exp.start,
        "end": exp.end,
        "variants": [v.model_dump(exclude_none=True) for v in exp.variants],
        **({} if exp.exploration.kind == "none" else {"exploration": exp.exploration.model_dump()}),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# -- a TOML writer for the shapes an experiment has (tomllib reads, it does not write) -----------


def to_toml(experiments: list[dict[str, Any]]) -> str:
    """Experiments as ``[[experiments]]`` TOML tables (scalars, one level of sub-tables, lists
    of tables)."""
    out = ["# Written by recsys (admin API); edits by hand are fine while the API is stopped.\n"]
    for doc in experiments:
        out.append("[[experiments]]\n")
        tables = {k: v for k, v in doc.items() if isinstance(v, dict)}
        arrays = {k: v for k, v in doc.items() if _is_table_list(v)}
        for key, value in doc.items():
            if key not in tables and key not in arrays:
                out.append(f"{key} = {_toml_value(value)}\n")
        for key, rows in arrays.items():
            for row in rows:
                out.append(f"\n[[experiments.{key}]]\n")
                out.extend(f"{k} = {_toml_value(v)}\n" for k, v in row.items())
        for key, table in tables.items():
            out.append(f"\n[experiments.{key}]\n")
            out.extend(f"{k} = {_toml_value(v)}\n" for k, v in table.items())
        out.append("\n")
    return "".join(out)


def _is_table_list(value: Any) -> bool:
    return (
        isinstance(value, list | tuple) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"cannot write {value!r} to TOML")
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write a {type(value).__name__} to TOML")
