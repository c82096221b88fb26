"""Credentials in URLs are redacted from the access log."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from serving.logs import RedactCredentials, redact_path


def test_sensitive_query_values_are_redacted_and_the_rest_kept() -> None:
    assert redact_path("/v1/popular?api_key=s3cret&k=5") == "/v1/popular?api_key=***&k=5"
    assert redact_path("/v1/popular?k=5") == "/v1/popular?k=5"
    assert redact_path("/v1/popular") == "/v1/popular"


@given(st.text(min_size=1, alphabet=st.characters(codec="ascii", categories=["L", "N"])))
def test_no_secret_survives(secret: str) -> None:
    for name in ("key", "X-API-Key", "token", "password", "auth"):
        assert secret not in redact_path(f"/v1/x?{name}={secret}").split("?", 1)[1].replace(
            name, ""
        )


def test_filter_rewrites_uvicorn_access_records() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/v1/popular?api_key=s3cret", "1.1", 200),
        None,
    )
    assert RedactCredentials().filter(record)
    assert "s3cret" not in record.getMessage()
    assert "/v1/popular?api_key=***" in record.getMessage()


def test_customer_ids_are_masked_unless_asked_for() -> None:
    path = "/v1/users/12347/recommendations?k=5&user_id=12347&session_id=s9"
    masked = redact_path(path)
    assert masked == "/v1/users/-/recommendations?k=5&user_id=-&session_id=-"
    assert "12347" not in masked and "s9" not in masked
    assert redact_path("/v1/sessions/abc/recommendations") == "/v1/sessions/-/recommendations"
    assert redact_path("/v1/items/12347/bought-together") == "/v1/items/12347/bought-together"
    assert redact_path(path, customer_ids=True) == path


@given(st.text(min_size=3, alphabet=st.characters(codec="ascii", categories=["L", "N"])))
def test_no_customer_id_survives_in_a_user_path(user: str) -> None:
    assert redact_path(f"/v1/users/{user}/offers?channel=web") == "/v1/users/-/offers?channel=web"
