"""Access-log hygiene: credentials never reach the logs.

Clients should send their key in the ``X-API-Key`` header, which uvicorn does not log; but a
client that puts it in the URL (``?api_key=...``) would otherwise have it written to the access
log verbatim. This filter redacts the values of credential-like query parameters.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

_SENSITIVE = re.compile(r"key|token|secret|passw|auth|signature", re.IGNORECASE)
#: Both separators of query parameters: ``&``, and ``;``, which some servers and proxies
#: also split on (``?k=3;key=SECRET`` carries a key for them, so it is redacted here too).
_PARAM = re.compile(r"([^&;]*)([&;]?)")


def redact_path(path: str) -> str:
    """``path`` with the values of credential-like query parameters replaced by ``***``.

    Everything else is left byte for byte as the client sent it.
    """
    base, sep, query = path.partition("?")
    if not sep:
        return path
    out = []
    for param, delimiter in _PARAM.findall(query):
        name, eq, _ = param.partition("=")
        if eq and _SENSITIVE.search(unquote_plus(name)):
            param = f"{name}=***"
        out.append(param + delimiter)
    return f"{base}?{''.join(out)}"


class RedactCredentials(logging.Filter):
    """Rewrite uvicorn access-log records (args: client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def install_access_log_filter() -> None:
    """Attach the filter once per process (each uvicorn worker calls it from ``create_app``)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactCredentials) for f in logger.filters):
        logger.addFilter(RedactCredentials())
