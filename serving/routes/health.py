"""Liveness, readiness and metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter
from starlette.responses import Response

from serving.deps import State
from serving.metrics import CONTENT_TYPE_LATEST
from serving.responses import OrjsonResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> OrjsonResponse:
    """The process is up (``worker``: its process id, to tell workers apart)."""
    return OrjsonResponse({"status": "ok", "worker": os.getpid()})


@router.get("/readyz")
def readyz(state: State) -> OrjsonResponse:
    """Ready only with a valid model version loaded (503 otherwise, saying why)."""
    if state.engine is None:
        body = {"status": "not ready", "reason": state.last_error or "no model version loaded"}
        return OrjsonResponse(body, status_code=503)
    return OrjsonResponse({"status": "ready", "model_version": state.engine.version})


@router.get("/metrics")
def metrics(state: State) -> Response:
    """Prometheus metrics."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
