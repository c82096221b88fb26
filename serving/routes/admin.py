"""Model administration: what serves, and hot reload."""

from __future__ import annotations

from fastapi import APIRouter, Depends

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
