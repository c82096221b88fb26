"""What several routes share: the list body, k bounds, fallback counting."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Query

from recsys.engine import RecommendationList
from serving.responses import OrjsonResponse
from serving.state import ServingState

#: ``k`` query parameter: 1..100.
K = Annotated[int, Query(ge=1, le=100, description="How many items (1-100).")]


def list_response(
    result: RecommendationList,
    state: ServingState,
    endpoint: str,
    *,
    recommendation_id: str | None = None,
    experiment: str | None = None,
    variant: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> OrjsonResponse:
    """The JSON body every list endpoint returns (``experiment``/``variant`` null outside one);
    ``extra`` adds keys (the offers of ``/offers``)."""
    if result.fallback:
        state.metrics.fallbacks.labels(endpoint=endpoint, kind=result.fallback).inc()
    body = {
        "recommendation_id": recommendation_id or uuid.uuid4().hex,
        "model_version": result.model_version,
        "items": [
            {"item_id": r.item_id, "score": float(r.score), "reasons": list(r.reasons)}
            for r in result.items
        ],
        "fallback": result.fallback,
        "experiment": experiment,
        "variant": variant,
    }
    if extra:
        body.update(extra)
    return OrjsonResponse(body)
