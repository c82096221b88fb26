"""Subcommands of the ``recsys`` command line (argument parsing only; see :mod:`recsys.cli`)."""

from __future__ import annotations

import argparse
from datetime import date


def iso_date(text: str) -> date:
    """An argparse ``type`` for a ``YYYY-MM-DD`` argument; a bad one is a usage error."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None
