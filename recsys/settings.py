"""Process settings, read from the environment once at start-up (never at import time)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.config import error_message
from recsys.errors import ConfigError

S = TypeVar("S", bound=BaseSettings)


if TYPE_CHECKING:
    from recsys.ranking.rules import RulesFile


class Settings(BaseSettings):
    """Settings shared by the command line, the training pipeline and the API.

    Every field reads from ``RECSYS_<FIELD>`` (e.g. ``RECSYS_HOME``).
    """

    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".recsys"), description="State folder: store, registry, logs.")
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://...). Unset: SQLite under RECSYS_HOME.",
    )
    # here, not in the serving settings: batch scoring and offline estimates rank with the
    # same rules the API serves
    store_busy_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long a write waits for another process's SQLite write lock before it "
        "fails (the API waits less: RECSYS_STORE_BUSY_TIMEOUT_S, default 2 there).",
    )
    rules_file: Path | None = Field(
        default=None,
        description="Business rules (TOML or JSON; default: $RECSYS_HOME/rules.toml when it "
        "exists, else the built-in defaults).",
    )

    @field_validator("home")
    @classmethod
    def _home_is_a_folder(cls, value: Path) -> Path:
        # every command creates what it needs under it: a file there failed later, in each
        # command its own way ("File exists", "Not a directory")
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} is not a folder (the state folder: store, models, files)")
        return value

    @property
    def rules_path(self) -> Path:
        """The business rules file every process ranks with (and the admin API writes)."""
        return self.rules_file or self.home / "rules.toml"

    def load_rules(self) -> RulesFile:
        """The business rules in force: the rules file, or the defaults while it is absent."""
        from recsys.ranking.rules import RulesFile, load_rules

        path = self.rules_path
        if self.rules_file is None and not path.exists():
            return RulesFile()
        return load_rules(path)

    @property
    def sqlite_path(self) -> Path:
        """Where the embedded store lives."""
        return self.home / "recsys.db"

    @property
    def registry_path(self) -> Path:
        """Where model versions are published."""
        return self.home / "models"


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Read settings of class ``cls`` from the environment; errors become :class:`ConfigError`."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, prefix="RECSYS_")) from None


def _describe(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        parts.append(f"{prefix}{where.upper() if prefix else where}: {error_message(err)}")
    return "; ".join(parts)
