"""Event times as files give them: ISO 8601 with an offset, or seconds since the epoch
(:func:`parse_timestamp`), and the zone a time without an offset is read in
(:func:`resolve_timezone`). An event time is stored as microseconds UTC
(:func:`recsys.data.schema.to_micros`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from typing import Any

from recsys.data.schema import (
    MICROS_PER_DAY,
    to_micros,
)
from recsys.errors import ConfigError, RowError

#: How far past the loader's clock an event time may lie before it is refused.
_FUTURE_SLACK_US = MICROS_PER_DAY
#: Epoch seconds past the year 9999: no event time, whatever the loader's clock says.
_MAX_EPOCH_SECONDS = 253_402_300_800
_EPOCH_NUMBER = re.compile(r"^\d{1,18}(\.\d+)?$")


def parse_timestamp(
    value: Any,
    name: str,
    err: Callable[[str, object, str], RowError],
    timezone: tzinfo | None,
    now_us: int | None = None,
    timezone_option: str | None = "--timezone",
) -> int:
    """Microseconds UTC for an ISO 8601 string, epoch seconds or a ``datetime``.

    Raises the error ``err(name, value, reason)`` builds when the value is not a time, has no
    UTC offset and no ``timezone`` was given, is before 1970 or more than a day ahead of
    ``now_us``. ``timezone_option`` is how the caller's user gives a timezone, named in the
    message for a time without an offset; ``None`` where they cannot (a request to the API).
    """
    naive = _NAIVE if timezone_option is None else f"{_NAIVE} or a timezone ({timezone_option})"
    if isinstance(value, str):
        try:
            us = _parse_ts_text(value.strip(), timezone)
        except _NaiveTimestamp:
            raise err(name, value, naive) from None
        except ValueError:
            raise err(
                name, value, "is not a timestamp (ISO 8601 with a UTC offset, or epoch seconds)"
            ) from None
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            if timezone is None:
                raise err(name, value, naive)
            value = value.replace(tzinfo=timezone)
        us = to_micros(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # Checked before scaling: 1e303 seconds is finite, its microseconds are not, and an
        # int too large for a float makes isfinite itself raise.
        if not -_MAX_EPOCH_SECONDS <= value <= _MAX_EPOCH_SECONDS:
            raise err(name, value, "is out of range (not a time in epoch seconds)")
        if not math.isfinite(value):
            raise err(name, value, "is not a timestamp")
        us = round(value * 1_000_000)
    else:
        raise err(name, value, "is missing" if value is None else "is not a timestamp")
    if us < 0:
        raise err(name, value, "is before 1970")
    now = now_us if now_us is not None else int(time.time() * 1_000_000)
    if us > now + _FUTURE_SLACK_US:
        raise err(name, value, "is more than a day in the future (milliseconds given as seconds?)")
    return us


_NAIVE = "has no UTC offset; add one (e.g. +00:00 or Z)"


class _NaiveTimestamp(ValueError):
    pass


@lru_cache(maxsize=1 << 16)
def _parse_ts_text(text: str, timezone: tzinfo | None) -> int:
    # Real event files repeat timestamps a lot (Online Retail: 23k distinct in 540k rows), so
    # parsing each distinct string once is most of the cost of timestamps.
    if _EPOCH_NUMBER.match(text):
        return round(float(text) * 1_000_000)
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        if timezone is None:
            raise _NaiveTimestamp(text)
        dt = dt.replace(tzinfo=timezone)
    return to_micros(dt)


def resolve_timezone(name: str | None) -> tzinfo | None:
    """The ``tzinfo`` for an IANA zone name (``Europe/London``) or ``UTC``; ``None`` for none.

    Raises
    ------
    ConfigError
        The name is not a known time zone.
    """
    if name is None:
        return None
    if name.upper() in {"UTC", "Z"}:
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"timezone: {name!r} is not a known time zone (e.g. UTC, Europe/London)"
        ) from None
