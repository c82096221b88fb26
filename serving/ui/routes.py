"""The merchandiser's page: routes under ``/ui``.

Each route checks the session once (a dependency), gathers one page's data from
:mod:`serving.ui.views`, and renders a template; a form that changes something posts, is
checked for its session token, calls one library method and redirects back (post, redirect,
get: reloading a page never repeats a change).
"""

from __future__ import annotations

import io
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from recsys.errors import AuthError, ConfigError, NotFoundError, RecsysError
from serving.deps import check_key
from serving.routes.common import IdConvertor  # noqa: F401 (registers the {name:id} convertor)
from serving.state import ServingState
from serving.ui import views
from serving.ui.auth import COOKIE, PREFIX, LoginRequired, Session, Signer, same_origin

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["words"] = lambda s: str(s).replace("_", " ")
templates.env.globals["PREFIX"] = PREFIX


def _number(value: Any, percent: bool = False) -> str:
    """A report figure as the ``recsys ab report`` tables print it ("-" where undefined)."""
    if value is None or value != value:
        return "-"
    return f"{value * 100:.2f}%" if percent else f"{value:.2f}"


templates.env.globals["fmt"] = _number
templates.env.globals["pct"] = lambda v: _number(v, True)
templates.env.globals["num"] = _number
templates.env.globals["chart"] = lambda row: Markup(views.metrics_svg(row))


async def _start_clock(request: Request) -> None:
    # measured from here, so the Server-Timing header is the page's own time
    request.state.ui_started = time.perf_counter()


router = APIRouter(prefix=PREFIX, include_in_schema=False, dependencies=[Depends(_start_clock)])


# -- dependencies ------------------------------------------------------------------------------


def _state(request: Request) -> ServingState:
    state: ServingState = request.app.state.recsys
    return state


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.ui_signer
    return signer


def _pages(request: Request) -> views.Pages:
    pages: views.Pages = request.app.state.ui_pages
    return pages


async def require_session(request: Request) -> Session:
    """The valid session of this request; :class:`LoginRequired` (a redirect) otherwise."""
    value = request.cookies.get(COOKIE)
    state = _state(request)
    session = _signer(request).check(value, state.settings.key_list()) if value else None
    if session is None:
        raise LoginRequired(request.url.path)
    return session


async def require_form_token(
    request: Request,
    session: Annotated[Session, Depends(require_session)],
    csrf: Annotated[str, Form()] = "",
) -> Session:
    """A state-changing form: the session's token, and not posted from another site."""
    if not same_origin(request) or not _signer(request).check_csrf(session, csrf):
        raise AuthError("the form is stale or came from another site; reload it", missing=False)
    return session


SessionDep = Annotated[Session, Depends(require_session)]
FormSession = Annotated[Session, Depends(require_form_token)]


def _render(
    request: Request,
    name: str,
    session: Session | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    started = getattr(request.state, "ui_started", None)
    context.setdefault("note", request.query_params.get("note"))
    context.setdefault("error", request.query_params.get("error"))
    context["csrf"] = _signer(request).csrf_token(session) if session else ""
    context["logged_in"] = session is not None
    context["nav"] = name.split(".")[0]
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    if started is not None:
        response.headers["Server-Timing"] = f"page;dur={(time.perf_counter() - started) * 1e3:.1f}"
    # pages hold customer data: never cached by a browser or a proxy
    response.headers["Cache-Control"] = "no-store"
    return response


def render_error(request: Request, exc: RecsysError) -> HTMLResponse:
    """An error of a page as HTML, with the status code the API gives it."""
    from serving.errors import status_of

    title = {401: "Not logged in", 403: "Refused", 404: "Not found", 503: "Not ready"}
    status = status_of(exc)
    return _render(
        request,
        "error.html",
        None,
        status,
        message=str(exc),
        title=title.get(status, "Cannot do that"),
    )


def _back(path: str, **params: str) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)


# -- login -------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    """The login page, or the customer search once logged in."""
    try:
        await require_session(request)
    except LoginRequired:
        return _back(f"{PREFIX}/login")
    return _back(f"{PREFIX}/customers")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "") -> HTMLResponse:
    """The login form (an API key in a password field)."""
    return _render(request, "login.html", None, next=_safe_next(next))


@router.post("/login")
def login(
    request: Request,
    api_key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check the key; on success set the session cookie and go where the user was going."""
    state = _state(request)
    if not same_origin(request):
        return _render(request, "login.html", None, 403, error="log in from this site's page")
    try:
        if not api_key:
            raise AuthError("type the admin API key", missing=True)
        check_key(state, api_key)  # as the API checks X-API-Key
    except AuthError as exc:
        return _render(request, "login.html", None, 401, error=str(exc), next=_safe_next(next))
    key = api_key.encode()
    _pages(request).warm(state)
    response = RedirectResponse(_safe_next(next) or f"{PREFIX}/customers", status_code=303)
    signer = _signer(request)
    response.set_cookie(
        COOKIE,
        signer.issue(key),
        max_age=int(signer.session_seconds),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(request: Request, session: FormSession) -> Response:
    """End the session (the cookie is removed) and show the login page."""
    response = _back(f"{PREFIX}/login", note="You are logged out.")
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


def _safe_next(path: str) -> str:
    # only a page of this UI: never an open redirect to another site
    ok = path.startswith(f"{PREFIX}/") and not path.startswith("//") and "\\" not in path
    return path if ok and not path.startswith(f"{PREFIX}/login") else ""


# -- customers ---------------------------------------------------------------------------------


@router.get("/customers", response_class=HTMLResponse)
def customers(request: Request, session: SessionDep, q: str = "") -> Response:
    """The customer search: an exact id opens the customer, else the ids that start with it."""
    state = _state(request)
    found = _pages(request).search(state, q) if q.strip() else []
    if q.strip() and q.strip() in found:
        return _back(f"{PREFIX}/customers/{quote(q.strip(), safe='')}")
    return _render(request, "customers.html", session, q=q, found=found)


@router.get("/customers/{user_id:id}", response_class=HTMLResponse)
def customer(
    request: Request,
    session: SessionDep,
    user_id: str,
    compare: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    """One customer: profile, consents, segment, purchases, lists and offers with reasons."""
    data = _pages(request).customer(_state(request), user_id, compare or None)
    return _render(
        request,
        "customer.html",
        session,
        profile_words=views.profile_words(data["profile"]),
        **data,
    )


# -- items -------------------------------------------------------------------------------------


@router.get("/items", response_class=HTMLResponse)
def items(request: Request, session: SessionDep, q: str = "") -> Response:
    """Find an item by id or words of its title."""
    state = _state(request)
    catalog = _pages(request).catalog(state)
    term = q.strip()
    if term in catalog:
        return _back(f"{PREFIX}/items/{quote(term, safe='')}")
    low = term.lower()
    found = (
        [i for i in catalog.values() if low in i.title.lower() or i.item_id.startswith(term)][:50]
        if term
        else []
    )
    return _render(request, "items.html", session, q=q, found=found)


@router.get("/items/{item_id:id}", response_class=HTMLResponse)
def item(
    request: Request,
    session: SessionDep,
    item_id: str,
    customer: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    """One item: related items, stock and price, and a customer's list to see the effect."""
    try:
        data = _pages(request).item_page(_state(request), item_id, customer or None)
    except NotFoundError as exc:
        return _render(request, "error.html", session, 404, message=str(exc), title="Not found")
    return _render(request, "item.html", session, customer=customer, **data)


@router.post("/items/{item_id:id}/stock")
def item_stock(
    request: Request,
    session: FormSession,
    item_id: str,
    in_stock: Annotated[str, Form()],
    customer: Annotated[str, Form()] = "",
) -> Response:
    """Take the item out of stock, or back in (the catalogue API's PATCH)."""
    if in_stock not in ("true", "false"):  # the form sends one of the two: not a guess
        where = f"{PREFIX}/items/{quote(item_id, safe='')}"
        return _back(where, error=f"in_stock: {in_stock!r} is not true or false")
    wanted = in_stock == "true"
    try:
        views.Pages.set_stock(_state(request), item_id, wanted)
    except RecsysError as exc:
        return _back(f"{PREFIX}/items/{quote(item_id, safe='')}", error=str(exc))
    note = "Back in stock." if wanted else "Out of stock: it has left every list."
    return _back(f"{PREFIX}/items/{quote(item_id, safe='')}", note=note, customer=customer)


@router.post("/items/{item_id:id}/price")
def item_price(
    request: Request,
    session: FormSession,
    item_id: str,
    price: Annotated[str, Form()] = "",
) -> Response:
    """Change the item's price (empty: unknown)."""
    where = f"{PREFIX}/items/{quote(item_id, safe='')}"
    try:
        value = float(price) if price.strip() else None
        if value is not None and not 0 <= value <= 1e9:
            raise ValueError
    except ValueError:
        return _back(where, error=f"price: {price!r} is not a number from 0 to 1,000,000,000")
    try:
        views.Pages.set_price(_state(request), item_id, value)
    except RecsysError as exc:
        return _back(where, error=str(exc))
    return _back(where, note="Price saved.")


# -- rules -------------------------------------------------------------------------------------


@router.get("/rules", response_class=HTMLResponse)
def rules_page(request: Request, session: SessionDep, customer: str = "") -> HTMLResponse:
    """The business rules file in a form, with a customer to preview."""
    state = _state(request)
    path = views.rules_path(state)
    return _render(
        request,
        "rules.html",
        session,
        path=path,
        text=views.read_rules_text(path),
        customer=customer,
        before=None,
        after=None,
    )


@router.post("/rules", response_class=HTMLResponse)
def rules_post(
    request: Request,
    session: FormSession,
    text: Annotated[str, Form()] = "",
    customer: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "preview",
) -> Response:
    """Preview the rules on a customer's list, or save them (validated either way)."""
    state = _state(request)
    path = views.rules_path(state)
    before = after = None
    try:
        if action == "save":
            views.save_rules(state, text)
            return _back(f"{PREFIX}/rules", note=f"Saved to {path}.", customer=customer)
        _, before, after = _pages(request).rules_preview(state, text, customer or None)
    except RecsysError as exc:
        return _render(
            request, "rules.html", session, 422, path=path, text=text, customer=customer,
            before=None, after=None, error=str(exc),
        )  # fmt: skip
    return _render(
        request, "rules.html", session, path=path, text=text, customer=customer,
        before=before, after=after, note="Valid rules: preview below (not saved yet).",
    )  # fmt: skip


# -- experiments -------------------------------------------------------------------------------


NEW_EXPERIMENT = """\
name = "new-test"
salt = "new-test-1"
start = {start}
end = {end}
holdout_share = 0.0

[[variants]]
name = "control"
share = 0.5

[[variants]]
name = "treatment"
share = 0.5
"""


@router.get("/experiments", response_class=HTMLResponse)
def experiments(request: Request, session: SessionDep) -> HTMLResponse:
    """Every experiment, running or not, and a form for a new one."""
    now = datetime.now(UTC).replace(microsecond=0)
    end = now.replace(year=now.year + 1) if now.month != 2 or now.day != 29 else now
    template = NEW_EXPERIMENT.format(start=now.isoformat(), end=end.isoformat())
    return _render(
        request,
        "experiments.html",
        session,
        rows=views.experiment_rows(_state(request)),
        template=template,
    )


@router.post("/experiments")
def experiment_create(
    request: Request, session: FormSession, text: Annotated[str, Form()] = ""
) -> Response:
    """Create an experiment from its definition (one that exists is changed on its page)."""
    try:
        exp = views.put_experiment(_state(request), views.experiment_from_text(text), new=True)
    except RecsysError as exc:
        return _back(f"{PREFIX}/experiments", error=str(exc))
    return _back(f"{PREFIX}/experiments/{quote(exp.name, safe='')}", note="Experiment saved.")


@router.get("/experiments/{name}", response_class=HTMLResponse)
def experiment(request: Request, session: SessionDep, name: str) -> HTMLResponse:
    """One experiment's report (sample-ratio check first) and its definition to edit."""
    state = _state(request)
    try:
        exp = views.experiment(state, name)
    except NotFoundError as exc:
        return _render(request, "error.html", session, 404, message=str(exc), title="Not found")
    report = None
    report_error = None
    try:
        report = views.experiment_report(state, name)
    except RecsysError as exc:
        # no exposures yet, or one group only: the page still shows and edits the definition
        report_error = str(exc)
    return _render(
        request,
        "experiment.html",
        session,
        exp=exp,
        running=exp.is_running(datetime.now(UTC)),
        started=exp.start <= datetime.now(UTC),
        report=report,
        report_error=report_error,
        text=views.experiment_toml(exp),
    )


@router.get("/experiments/{name}/plot.png")
def experiment_plot(request: Request, session: SessionDep, name: str) -> Response:
    """The report's plot (each metric per variant with its interval)."""
    report = views.experiment_report(_state(request), name)
    return Response(report.plot_png(), media_type="image/png")


@router.post("/experiments/{name}")
def experiment_change(
    request: Request,
    session: FormSession,
    name: str,
    action: Annotated[str, Form()] = "save",
    text: Annotated[str, Form()] = "",
) -> Response:
    """Start, stop or save an experiment."""
    where = f"{PREFIX}/experiments/{quote(name, safe='')}"
    state = _state(request)
    try:
        if action in ("start", "stop"):
            views.start_or_stop(state, name, action)
            note = "Started." if action == "start" else "Stopped."
        else:
            views.put_experiment(state, views.experiment_from_text(text), name)
            note = "Saved."
    except RecsysError as exc:
        return _back(where, error=str(exc))
    return _back(where, note=note)


# -- models ------------------------------------------------------------------------------------


@router.get("/models", response_class=HTMLResponse)
def models(request: Request, session: SessionDep) -> HTMLResponse:
    """The published versions, their metrics, which serves; promote and roll back."""
    state = _state(request)
    rows = views.model_rows(state)
    return _render(
        request,
        "models.html",
        session,
        rows=rows,
        metrics=views.metric_names(rows),
        last_error=state.last_error,
    )


@router.get("/models/{version}/plots/{name}")
def model_plot(request: Request, session: SessionDep, version: str, name: str) -> Response:
    """An evaluation plot stored in a version (a PNG at its top level)."""
    folder = _state(request).registry.path(version)
    path = folder / name
    if "/" in name or not name.endswith(".png") or not path.is_file():
        raise NotFoundError(f"model version {version} has no plot {name!r}")
    return Response(path.read_bytes(), media_type="image/png")


@router.post("/models")
def models_change(
    request: Request,
    session: FormSession,
    action: Annotated[str, Form()],
    version: Annotated[str, Form()] = "",
) -> Response:
    """Promote a version, or roll back to the previous one."""
    state = _state(request)
    try:
        if action == "promote":
            note = f"Now serving {views.promote(state, version)}."
        else:
            note = f"Rolled back: now serving {views.rollback(state)}."
    except RecsysError as exc:
        return _back(f"{PREFIX}/models", error=str(exc))
    return _back(f"{PREFIX}/models", note=note)


# -- campaigns ---------------------------------------------------------------------------------


def _campaign_day(state: ServingState, day: str) -> date:
    if day:
        try:
            return date.fromisoformat(day)
        except ValueError:
            raise ConfigError(f"date: {day!r} is not a date like 2011-12-01") from None
    return state.settings.offers_date or datetime.now(UTC).date()


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns(
    request: Request,
    session: SessionDep,
    day: Annotated[str, Query(alias="date", max_length=10)] = "",
    trigger: str = "",
    segment: str = "",
) -> HTMLResponse:
    """Who would receive what on a date, by trigger and segment, with the expected value."""
    state = _state(request)
    view = None
    error = None
    chosen = None
    computing = False
    try:
        chosen = _campaign_day(state, day)
        # a date not previewed yet is computed in the background (seconds on a real shop):
        # the page answers at once and reloads itself until the preview is there
        result = _pages(request).campaign_ready(state, chosen)
        computing = result is None
        if result is not None:
            view = views.campaign_view(result, trigger or None, segment or None)
    except RecsysError as exc:
        error = str(exc)
    return _render(
        request,
        "campaigns.html",
        session,
        view=view,
        day=chosen.isoformat() if chosen else day,
        trigger=trigger,
        segment=segment,
        error=error or request.query_params.get("error"),
        shown=views.CAMPAIGN_ROWS,
        computing=computing,
    )


@router.get("/campaigns.csv")
def campaigns_csv(
    request: Request,
    session: SessionDep,
    day: Annotated[str, Query(alias="date", max_length=10)] = "",
    trigger: str = "",
    segment: str = "",
) -> Response:
    """The previewed sends as CSV (the columns of ``recsys campaigns run --out``)."""
    state = _state(request)
    chosen = _campaign_day(state, day)
    result = _pages(request).campaign(state, chosen)
    view = views.campaign_view(result, trigger or None, segment or None)
    body = io.StringIO(views.campaign_csv(view.rows)).getvalue()
    name = f"campaign-{chosen.isoformat()}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
