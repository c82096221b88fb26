"""The merchandiser's web page (``/ui``) and the offline API docs (``/docs``).

:func:`install` adds both to the API app: the page's routes, its static files (CSS, a little
JavaScript, and Swagger UI, all shipped in the package: nothing is loaded from the internet),
the login redirect, and a ``/docs`` page that uses the packaged Swagger UI.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from recsys.settings import load_settings
from serving.ui.auth import PREFIX, LoginRequired, Signer, UISettings, load_secret

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: Where the static files are served.
STATIC_URL = f"{PREFIX}/static"


def install(app: FastAPI, *, home: Path | None = None, settings: UISettings | None = None) -> None:
    """Add the merchandiser's page and the offline ``/docs`` to ``app``.

    Parameters
    ----------
    app
        The API, built with ``docs_url=None`` (this adds its own ``/docs``).
    home
        The state folder the API uses (where the session secret is kept unless
        ``RECSYS_UI_SECRET`` is set).
    settings
        Read from ``RECSYS_UI_*`` when not given, once, here.
    """
    from serving.ui import views
    from serving.ui.routes import router

    overrides = {"home": home} if home is not None else {}
    settings = settings or load_settings(UISettings, **overrides)
    ui_settings = settings
    app.state.ui_signer = Signer(
        lambda: load_secret(ui_settings), session_seconds=settings.ui_session_hours * 3600
    )
    app.state.ui_pages = views.Pages()
    app.mount(STATIC_URL, StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(router)
    app.add_exception_handler(LoginRequired, _to_login)
    _html_errors_under_ui(app)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI from the package's own copy (works without a network)."""
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{STATIC_URL}/swagger/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon.svg",
        )


async def _to_login(request: Request, exc: Exception) -> RedirectResponse:
    assert isinstance(exc, LoginRequired)
    from urllib.parse import quote

    target = f"{PREFIX}/login"
    if exc.next_path.startswith(f"{PREFIX}/") and request.method == "GET":
        target += f"?next={quote(exc.next_path, safe='/')}"
    return RedirectResponse(target, status_code=303)


def _html_errors_under_ui(app: FastAPI) -> None:
    """Errors of the page's routes as an HTML page, with the API's status code
    (:func:`serving.errors.status_of`); everywhere else the API's JSON error, unchanged."""
    from recsys.errors import RecsysError
    from serving.ui.routes import render_error

    api_handler = app.exception_handlers[RecsysError]

    async def handler(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(f"{PREFIX}/") and isinstance(exc, RecsysError):
            return render_error(request, exc)
        response = api_handler(request, exc)
        if inspect.isawaitable(response):
            response = await response
        assert isinstance(response, Response)
        return response

    app.add_exception_handler(RecsysError, handler)
