"""recsys: a recommendation and personalisation engine for e-commerce.

The library layer. ``training`` (offline pipeline) and ``serving`` (HTTP API) stand on it;
it imports neither of them, except the command-line entry point :mod:`recsys.cli`.
"""

__version__ = "0.1.0"
