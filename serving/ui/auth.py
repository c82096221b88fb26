"""Logging in to the merchandiser's page: an API key once, then a signed session cookie.

The admin API key is typed into a password field and posted once; it never travels in a URL,
a cookie or a log line. The answer is a cookie that is HTTP-only (no script reads it),
``SameSite=Strict`` (no other site's page sends it) and signed with HMAC-SHA256:

``base64url(payload) "." base64url(mac)``, the payload holding the expiry, a random nonce
and a *fingerprint* of the key that logged in (an HMAC of it, not the key). A session
therefore ends when it expires, when the secret changes, and when its key is removed from
``RECSYS_API_KEYS``: revoking a key logs out everyone who used it.

Every form that changes something carries a token derived from the session's nonce
(:func:`csrf_token`), checked with the ``Origin`` header when the browser sends one.

The secret is ``RECSYS_UI_SECRET`` when set, else a random one kept in
``$RECSYS_HOME/ui-secret`` (created on first use, mode 0600), so that every worker of one
host, sharing ``RECSYS_HOME``, accepts the same cookies.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from pydantic import Field, SecretStr

from recsys.errors import ConfigError
from recsys.settings import Settings

#: The session cookie's name.
COOKIE = "recsys_ui"
#: Where the UI lives: the cookie is sent to these paths only.
PREFIX = "/ui"


class UISettings(Settings):
    """Settings of the merchandiser's page (``RECSYS_UI_*``), read once when the app is built."""

    ui_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs session cookies (default: a random one kept in "
        "$RECSYS_HOME/ui-secret, shared by the workers of one host).",
    )
    ui_session_hours: float = Field(
        default=8.0, gt=0, le=24 * 30, description="How long a login lasts."
    )


class LoginRequired(Exception):
    """Raised by :func:`require_session`; the app answers with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True, slots=True)
class Session:
    """A valid login: when it ends, and the nonce its form tokens are derived from."""

    expires: int
    nonce: str
    key_id: str


def load_secret(settings: UISettings) -> bytes:
    """The signing secret (see the module docstring).

    Raises
    ------
    ConfigError
        The secret file cannot be read or created (naming it).
    """
    if settings.ui_secret is not None and settings.ui_secret.get_secret_value():
        return settings.ui_secret.get_secret_value().encode()
    path = Path(settings.home) / "ui-secret"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two workers starting together agree on one file (the loser reads it)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create the UI session secret: {exc}") from None
    else:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32))
    for _ in range(50):
        try:
            text = path.read_text(encoding="ascii").strip()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the UI session secret: {exc}") from None
        if text:
            return text.encode()
        time.sleep(0.01)  # the creating worker has not written it yet
    raise ConfigError(f"{path}: the UI session secret is empty; delete the file to renew it")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and checks session cookies and form tokens with one secret.

    ``secret`` is called once, on first use: a server whose page nobody opens writes no
    secret file.
    """

    def __init__(self, secret: Callable[[], bytes], *, session_seconds: float) -> None:
        self._load = secret
        self._key: bytes | None = None
        self.session_seconds = session_seconds

    @property
    def _secret(self) -> bytes:
        if self._key is None:
            self._key = self._load()
        return self._key

    def key_id(self, key: bytes) -> str:
        """The fingerprint of an API key (keyed: it says nothing about the key)."""
        return hmac.new(self._secret, b"key:" + key, hashlib.sha256).hexdigest()[:32]

    def issue(self, key: bytes, now: float | None = None) -> str:
        """A cookie value for a login with ``key``."""
        now = time.time() if now is None else now
        payload = json.dumps(
            {
                "exp": int(now + self.session_seconds),
                "n": secrets.token_hex(16),
                "k": self.key_id(key),
            },
            separators=(",", ":"),
        ).encode()
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"

    def check(self, value: str, keys: list[bytes], now: float | None = None) -> Session | None:
        """The session a cookie value stands for, or ``None`` when it is forged, malformed,
        expired, or its key is no longer one of ``keys``."""
        head, sep, tail = value.partition(".")
        if not sep:
            return None
        try:
            payload, mac = _unb64(head), _unb64(tail)
        except (binascii.Error, ValueError):
            return None
        expected = hmac.new(self._secret, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            data = json.loads(payload)
            session = Session(int(data["exp"]), str(data["n"]), str(data["k"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= (time.time() if now is None else now):
            return None
        # compared with every key, without stopping early, as the API compares keys
        known = False
        for key in keys:
            known |= hmac.compare_digest(self.key_id(key), session.key_id)
        return session if known else None

    def csrf_token(self, session: Session) -> str:
        """The token every state-changing form of this session carries."""
        return hmac.new(self._secret, b"csrf:" + session.nonce.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, session: Session, token: str | None) -> bool:
        """Whether ``token`` is this session's form token."""
        return bool(token) and hmac.compare_digest(self.csrf_token(session), token or "")


def same_origin(request: Request) -> bool:
    """``False`` when the browser says the request comes from another site (``Origin``, else
    ``Referer``); ``True`` when it matches this host or says nothing (non-browser clients)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    with contextlib.suppress(ValueError):
        scheme, rest = origin.split("://", 1)
        return rest.split("/", 1)[0] == host and scheme in ("http", "https")
    return False
