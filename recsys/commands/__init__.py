"""Subcommands of the ``recsys`` command line (argument parsing only; see :mod:`recsys.cli`)."""
