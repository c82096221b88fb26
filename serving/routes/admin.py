"""Administration: what serves, hot reload, and the business rules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from recsys.config import write_config_file
from recsys.ranking.rules import parse_rules
from serving.deps import State, require_key
from serving.responses import OrjsonResponse
from serving.schemas import ReloadIn

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_key)])


@router.get("/models")
def models(state: State) -> OrjsonResponse:
    """The version serving, the registry's current one, and the published versions."""
    return OrjsonResponse(
        {
            "serving": state.engine.describe() if state.engine else None,
            "current": state.registry.current_version(),
            "versions": state.registry.version_names(),
            "last_error": state.last_error,
        }
    )


@router.post("/models/reload")
def reload(state: State, body: ReloadIn | None = None) -> OrjsonResponse:
    """Load a version (default: current) and swap it in; on failure the old one keeps serving."""
    engine = state.reload(body.version if body else None)
    return OrjsonResponse({"serving": engine.describe()})


@router.get("/rules")
def get_rules(state: State) -> OrjsonResponse:
    """The business rules in force (defaults filled in)."""
    return OrjsonResponse({"rules": state.rules.model_dump(mode="json")})


@router.put("/rules")
def put_rules(state: State, body: Annotated[dict[str, Any], Body()]) -> OrjsonResponse:
    """Replace the business rules (the body is the rules file as JSON). 422 names the rule and
    the field, and nothing changes; otherwise the rules file is written atomically and every
    worker ranks with the new rules within the live refresh interval."""
    rules = parse_rules(body, "request")
    write_config_file(
        state.settings.rules_path,
        rules.model_dump(mode="json", exclude_defaults=True),
        header="Written by recsys (admin API).",
    )
    state.store.notify_change()
    state.apply_rules(rules)
    return OrjsonResponse({"rules": rules.model_dump(mode="json")})
