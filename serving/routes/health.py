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
    """Ready only with a valid model version loaded and a store that answers (503 otherwise,
    saying why). The background writers are reported; one that fails is named in ``reason``
    but does not make the process unready (requests are still answered; rows wait)."""
    body = state.readiness()
    return OrjsonResponse(body, status_code=200 if body["status"] == "ready" else 503)


@router.get("/metrics")
def metrics(state: State) -> Response:
    """Prometheus metrics."""
    state.observe()
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
