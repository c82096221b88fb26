"""Access-log hygiene: credentials and customer ids never reach the logs.

Clients should send their key in the ``X-API-Key`` header, which uvicorn does not log; but a
client that puts it in the URL (``?api_key=...``) would otherwise have it written to the access
log verbatim. This filter redacts the values of credential-like query parameters.

A customer id in a path (``/v1/users/12347/recommendations``) or a query (``user_id=``) is
personal data that an erasure cannot reach once it is in a log file, so it is masked too
(``/v1/users/-/recommendations``) unless ``RECSYS_LOG_CUSTOMER_IDS`` is set.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

_SENSITIVE = re.compile(r"key|token|secret|passw|auth|signature", re.IGNORECASE)
#: Both separators of query parameters: ``&``, and ``;``, which some servers and proxies
#: also split on (``?k=3;key=SECRET`` carries a key for them, so it is redacted here too).
_PARAM = re.compile(r"([^&;]*)([&;]?)")
#: Path segments that name a customer or a session (the segment after them is masked).
_PERSONAL_PATH = re.compile(r"(/v1/(?:users|sessions)/)([^/?]+)")
#: Query parameters that name a customer or a session.
_PERSONAL_PARAM = re.compile(r"^(user_id|session_id|customer_id)$", re.IGNORECASE)
#: What replaces a masked id.
MASK = "-"


def redact_path(path: str, *, customer_ids: bool = False) -> str:
    """``path`` with the values of credential-like query parameters replaced by ``***`` and,
    unless ``customer_ids``, customer and session ids replaced by :data:`MASK`.

    Everything else is left byte for byte as the client sent it.
    """
    base, sep, query = path.partition("?")
    if not customer_ids:
        base = _PERSONAL_PATH.sub(lambda m: m.group(1) + MASK, base)
    if not sep:
        return base
    out = []
    for param, delimiter in _PARAM.findall(query):
        name, eq, _ = param.partition("=")
        plain = unquote_plus(name)
        if eq and _SENSITIVE.search(plain):
            param = f"{name}=***"
        elif eq and not customer_ids and _PERSONAL_PARAM.match(plain):
            param = f"{name}={MASK}"
        out.append(param + delimiter)
    return f"{base}?{''.join(out)}"


class RedactCredentials(logging.Filter):
    """Rewrite uvicorn access-log records (args: client, method, path, version, status)."""

    def __init__(self, *, customer_ids: bool = False) -> None:
        super().__init__()
        self.customer_ids = customer_ids

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = redact_path(args[2], customer_ids=self.customer_ids)
            record.args = (*args[:2], path, *args[3:])
        return True


def install_access_log_filter(*, customer_ids: bool = False) -> None:
    """Attach the filter once per process (each uvicorn worker calls it from ``create_app``);
    ``customer_ids`` keeps customer and session ids in the log."""
    logger = logging.getLogger("uvicorn.access")
    for f in logger.filters:
        if isinstance(f, RedactCredentials):
            f.customer_ids = customer_ids
            return
    logger.addFilter(RedactCredentials(customer_ids=customer_ids))
