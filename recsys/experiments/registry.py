"""The experiments file: which experiments exist, and admin changes written back atomically.

The file is ``RECSYS_EXPERIMENTS_FILE`` or ``$RECSYS_HOME/experiments.toml`` (TOML, or JSON when
its name ends in ``.json``), holding experiments as ``[[experiments]]`` tables (a file with one
experiment at the top level is read too). A missing file means no experiments.

:class:`ExperimentRegistry` keeps the validated definitions in memory;
:meth:`~ExperimentRegistry.put` and :meth:`~ExperimentRegistry.delete` rewrite the whole file
through a temporary file and an atomic rename, so a reader never sees half a file and a crash
leaves the old one.

A variant's ``ranking`` names the business rules its lists are reranked with:

* absent, or ``"default"``: the server's own rules (``RECSYS_RULES_FILE``);
* otherwise a rules file (:mod:`recsys.ranking.rules`), absolute or relative to the folder of
  the experiments file; a value without a ``.toml``/``.json`` suffix is tried as
  ``<value>.toml``, then ``<value>.json`` (``ranking = "rules/summer"``). An experiment put
  over the API may only name rules files inside that folder.

Every rules file is read and validated when the experiments are loaded or an experiment is put,
so a missing or invalid one is a :class:`~recsys.errors.ConfigError` naming the experiment, the
variant and the file, and nothing is changed. Loaded rules are kept in memory: requests never
read a file, and a rules file edited later is read again at the next load or put.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field

from recsys.config import read_config_file, write_config_file
from recsys.errors import ConfigError, NotFoundError
from recsys.experiments.definitions import (
    Experiment,
    Variant,
    experiment_from_dict,
    load_experiments,
)
from recsys.files import changing
from recsys.ranking.rules import RulesFile, load_rules
from recsys.settings import Settings

#: File name under ``RECSYS_HOME`` when ``RECSYS_EXPERIMENTS_FILE`` is unset.
DEFAULT_FILE = "experiments.toml"

#: The ``ranking`` of a variant served with the server's own rules (as when it is left out).
DEFAULT_RANKING = "default"

#: Suffixes a rules file may have (tried in this order for a ``ranking`` without one).
RULES_SUFFIXES = (".toml", ".json")

#: The comment at the top of an experiments TOML file the registry writes.
FILE_HEADER = "Written by recsys (admin API); edits by hand are fine while the API is stopped."


class ExperimentSettings(Settings):
    """Settings of the experiment commands (``RECSYS_EXPERIMENTS_FILE``)."""

    experiments_file: Path | None = Field(
        default=None, description="Experiments TOML/JSON (default: $RECSYS_HOME/experiments.toml)."
    )


def experiments_path(settings: Settings) -> Path:
    """The experiments file the settings point at."""
    explicit = getattr(settings, "experiments_file", None)
    return Path(explicit) if explicit else settings.home / DEFAULT_FILE


def ranking_path(ranking: str | None, base: Path) -> Path | None:
    """The rules file a variant's ``ranking`` points at (``None``: the server's rules).

    Parameters
    ----------
    ranking
        The variant's ``ranking`` value.
    base
        Folder that relative paths start from (the experiments file's folder).

    Returns
    -------
    Path or None
        The file to read; for a value without a rules suffix, the first of ``<value>.toml`` and
        ``<value>.json`` that exists (``<value>.toml`` when neither does, for the error).
    """
    if ranking is None or ranking.strip() in ("", DEFAULT_RANKING):
        return None
    path = Path(ranking).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.suffix.lower() in RULES_SUFFIXES:
        return path
    tried = [path.with_name(path.name + suffix) for suffix in RULES_SUFFIXES]
    return next((p for p in tried if p.exists()), tried[0])


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
        # every variant's rules file and rules, by its `ranking` value: read when an experiment
        # is loaded or put, so a request only looks them up
        self._rules: dict[str, tuple[Path, RulesFile]] = {}

    def load(self) -> ExperimentRegistry:
        """(Re)read the file and every variant's rules file; a missing file is no experiments.
        Returns ``self``.

        Raises
        ------
        ConfigError
            The file is invalid, or a variant's rules file is missing or invalid (the message
            names the experiment, the variant and the rules file); nothing is changed.
        """
        found = load_experiments(self.path) if _has_experiments(self.path) else ()
        rules: dict[str, tuple[Path, RulesFile]] = {}
        for exp in found:
            rules.update(self._read_rules(exp, str(self.path)))
        with self._lock:
            self._experiments = tuple(found)
            self._rules = rules
        return self

    def ranking(self, experiment: Experiment, variant: Variant) -> tuple[str, RulesFile] | None:
        """The rules ``variant`` of ``experiment`` is ranked with, and the file they came from.

        Answered from memory (this runs on every request under an experiment).

        Returns
        -------
        tuple of (str, RulesFile) or None
            ``None`` when the variant uses the server's own rules.
        """
        if variant.ranking is None:
            return None
        found = self._rules.get(variant.ranking)
        if found is None:
            # an experiment built elsewhere and never loaded or put here: read its rules once
            read = self._read_rules(experiment, str(self.path), only=variant)
            with self._lock:
                self._rules.update(read)
            found = read.get(variant.ranking)
            if found is None:
                return None  # "default"
        path, rules = found
        return str(path), rules

    def ranking_file(self, variant: Variant) -> str | None:
        """The rules file ``variant``'s ``ranking`` resolves to (``None``: the server's)."""
        found = self._rules.get(variant.ranking) if variant.ranking is not None else None
        if found is not None:
            return str(found[0])
        path = ranking_path(variant.ranking, self.path.parent)
        return None if path is None else str(path)

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

    def put(
        self, data: Experiment | Mapping[str, Any], name: str | None = None, *, new: bool = False
    ) -> Experiment:
        """Add or replace an experiment and write the file.

        Parameters
        ----------
        data
            A definition, or a mapping validated as one (errors name the field).
        name
            When given, it must equal the definition's name (the admin URL's name).
        new
            Only add: an experiment of that name is not replaced (a form that creates one
            must not reassign a running experiment's users with another salt or variants).

        Raises
        ------
        ConfigError
            The definition is invalid, or ``new`` and the name is taken.
        """
        exp = data if isinstance(data, Experiment) else experiment_from_dict(dict(data), "request")
        if name is not None and exp.name != name:
            raise ConfigError(
                f"request: field 'name' is {exp.name!r} but the URL names experiment {name!r}"
            )
        rules = self._read_rules(exp, "request")
        with changing(self.path):
            self.load()  # the file as it is: another worker may have changed it since
            with self._lock:
                self._rules.update(rules)
                current = list(self._experiments)
                for i, old in enumerate(current):
                    if old.name == exp.name:
                        if new:
                            raise ConfigError(
                                f"{self.path}: an experiment named {exp.name!r} exists "
                                "already; a new experiment needs a name of its own"
                            )
                        current[i] = exp
                        break
                else:
                    current.append(exp)
                self._write(current)
                self._experiments = tuple(current)
        return exp

    def delete(self, name: str) -> Experiment:
        """Remove an experiment and write the file; returns what was removed."""
        with changing(self.path):
            self.load()  # the file as it is: another worker may have changed it since
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

    def _read_rules(
        self, exp: Experiment, source: str, only: Variant | None = None
    ) -> dict[str, tuple[Path, RulesFile]]:
        """Read and validate the rules files of ``exp``'s variants (or of ``only``), by their
        ``ranking`` value."""
        out: dict[str, tuple[Path, RulesFile]] = {}
        base = self.path.parent
        for variant in exp.variants if only is None else (only,):
            path = ranking_path(variant.ranking, base)
            if path is None or variant.ranking is None or variant.ranking in out:
                continue
            try:
                if source == "request" and not path.resolve().is_relative_to(base.resolve()):
                    # an API key must not be a way to read (and echo, in an error) any file on
                    # the server: over the API, rules come from the experiments file's folder
                    raise ConfigError(
                        "over the API a rules file must be inside the experiments file's folder"
                    )
                out[variant.ranking] = (path, load_rules(path))
            except ConfigError as exc:
                raise ConfigError(
                    f"{source}: experiment {exp.name!r}, variant {variant.name!r}: "
                    f"ranking {variant.ranking!r}: {exc}"
                ) from None
        return out

    def _write(self, experiments: list[Experiment]) -> None:
        write_config_file(
            self.path, {"experiments": [_plain(e) for e in experiments]}, header=FILE_HEADER
        )


def _has_experiments(path: Path) -> bool:
    """Whether ``path`` exists and is not ``experiments = []`` (what deleting the last
    experiment writes; :func:`load_experiments` rejects an empty list in a hand-written file)."""
    return path.exists() and read_config_file(path) != {"experiments": []}


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
