"""What several routes share: the list body, the list parameters' bounds, fallback counting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Path, Query
from starlette.convertors import Convertor, register_url_convertor

from recsys.data.schema import MAX_ID_LENGTH
from recsys.service import Served
from serving.responses import OrjsonResponse
from serving.state import ServingState


class IdConvertor(Convertor[str]):
    """``{name:id}``: an id in a path, which may hold "/" ("ABC/12"), but neither starts nor
    ends with one nor holds an empty segment.

    Starlette's ``path`` takes the rest of the path whatever it is: ``DELETE
    /v1/users/14646/`` erased a customer "14646/" who did not exist, answered 200, and left
    14646's events (before, no route matched and the trailing slash was redirected).
    """

    regex = "[^/]+(?:/[^/]+)*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", IdConvertor())

#: ``k`` query parameter: 1..100.
K = Annotated[int, Query(ge=1, le=100, description="How many items (1-100).")]
#: ``category`` query parameter: a category path prefix.
Category = Annotated[str | None, Query(max_length=256)]
#: ``placement`` query parameter: the page slot whose rules apply.
Placement = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
#: An id in the path (a customer, a session, an item), as long as stored ids may be.
PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]


def list_response(
    served: Served,
    state: ServingState,
    endpoint: str,
    *,
    extra: Mapping[str, Any] | None = None,
) -> OrjsonResponse:
    """The JSON body every list endpoint returns (``experiment``/``variant`` null outside one);
    ``extra`` adds keys."""
    result = served.result
    if result.fallback:
        state.metrics.fallbacks.labels(endpoint=endpoint, kind=result.fallback).inc()
    body: dict[str, Any] = {
        "recommendation_id": served.recommendation_id,
        "model_version": result.model_version,
        "items": [
            {"item_id": r.item_id, "score": float(r.score), "reasons": list(r.reasons)}
            for r in result.items
        ],
        "fallback": result.fallback,
        "experiment": served.experiment,
        "variant": served.variant,
    }
    if served.offers is not None:
        body["offers"] = [c.as_dict() for c in served.offers]
    if extra:
        body.update(extra)
    return OrjsonResponse(body)
