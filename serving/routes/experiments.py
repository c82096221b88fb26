"""A/B experiments in the API: assignment lookup, admin CRUD, and serving a list under a variant.

List routes call :func:`choose_arm` (which experiment and variant the user is in, and which
engine serves it) and :func:`respond` (exploration, the exposure record, the JSON body). The
exposure is only put on the writer's queue: the request never waits for the store.

When several experiments run at once, a list is served under the first running one in the
experiments file: one list can only be ranked by one variant.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Depends, Path

from recsys.data.schema import MAX_ID_LENGTH
from recsys.engine import Engine, RecommendationList
from recsys.errors import NotFoundError
from recsys.experiments.assignment import assign
from recsys.experiments.definitions import HOLDOUT, Experiment
from recsys.experiments.exposures import Exposure
from recsys.experiments.offpolicy import explore
from recsys.experiments.registry import ExperimentRegistry
from serving.deps import State, read_access, require_key
from serving.responses import OrjsonResponse
from serving.routes.common import list_response
from serving.state import ServingState

router = APIRouter(tags=["experiments"])

Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
UserId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]


@dataclass(frozen=True, slots=True)
class Arm:
    """Where a request landed: the experiment and variant (``None`` outside any) and the
    engine that serves it."""

    experiment: Experiment | None
    variant: str | None
    engine: Engine

    @property
    def holdout(self) -> bool:
        """The user is held out: serve non-personal results."""
        return self.variant == HOLDOUT


def choose_arm(state: ServingState, engine: Engine, user_id: str | None) -> Arm:
    """The running experiment (first in the file) and variant of ``user_id``, and its engine.

    A variant whose ``model_version`` cannot be loaded is served by ``engine`` (the current
    version) and counted in ``recsys_variant_fallbacks``. A variant with its own ``ranking``
    gets its rules on whichever engine serves it; the holdout keeps the server's rules.
    """
    registry = state.experiments
    if registry is None or not user_id:
        return Arm(None, None, engine)
    now = datetime.now(UTC)
    for exp in registry.running(now):
        variant = assign(exp, user_id, now).variant
        if variant is None:
            continue
        if variant == HOLDOUT:
            return Arm(exp, variant, engine)
        spec = next(v for v in exp.variants if v.name == variant)
        serving = engine
        if spec.model_version and spec.model_version != engine.version:
            other = state.engine_for_version(spec.model_version)
            if other is None:
                state.metrics.variant_fallbacks.labels(experiment=exp.name, variant=variant).inc()
            else:
                serving = other
        ranking = registry.ranking(exp, spec)
        if ranking is not None:
            serving = state.engine_with_rules(serving, *ranking)
        return Arm(exp, variant, serving)
    return Arm(None, None, engine)


def holdout_list(arm: Arm, k: int) -> RecommendationList:
    """The non-personal list a held-out user gets."""
    return replace(arm.engine.popular(k), fallback=HOLDOUT)


def respond(
    result: RecommendationList,
    arm: Arm,
    state: ServingState,
    endpoint: str,
    *,
    user_id: str | None,
    placement: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> OrjsonResponse:
    """Explore (as the variant says), queue the exposure, and build the list body (with
    ``extra`` keys added)."""
    rid = uuid.uuid4().hex
    exp = arm.experiment
    if exp is None or user_id is None:
        return list_response(result, state, endpoint, recommendation_id=rid, extra=extra)
    ids = [r.item_id for r in result.items]
    props: tuple[float, ...] = (1.0,) * len(ids)
    if ids and not arm.holdout:
        # a fresh generator per request: numpy generators are not safe to share across threads
        served = explore(ids, exp.exploration, np.random.default_rng())
        by_id = {r.item_id: r for r in result.items}
        result = replace(result, items=[by_id[i] for i in served.items])
        ids, props = list(served.items), served.propensities
    writer = state.exposures
    if writer is not None:
        writer.submit(
            Exposure(
                recommendation_id=rid,
                user_id=user_id,
                experiment=exp.name,
                variant=arm.variant,
                items=tuple(ids),
                ts=time.time_ns() // 1000,
                propensities=props,
                placement=placement or endpoint,
                model_version=result.model_version,
            )
        )
    return list_response(
        result,
        state,
        endpoint,
        recommendation_id=rid,
        experiment=exp.name,
        variant=arm.variant,
        extra=extra,
    )


# -- endpoints ---------------------------------------------------------------------------------


def _registry(state: ServingState) -> ExperimentRegistry:
    if state.experiments is None:
        raise NotFoundError("no experiments are configured on this server")
    return state.experiments


def _describe(exp: Experiment, registry: ExperimentRegistry) -> dict[str, Any]:
    """The definition as JSON, each variant with the rules file its ``ranking`` resolves to
    (``rules_file``: ``null`` for the server's own rules)."""
    out = exp.model_dump(mode="json")
    out["variants"] = [
        {**doc, "rules_file": registry.ranking_file(v)}
        for doc, v in zip(out["variants"], exp.variants, strict=True)
    ]
    return out


@router.get("/v1/experiments/{name}/assignment/{user_id}", dependencies=[Depends(read_access)])
def assignment(state: State, name: Name, user_id: UserId) -> OrjsonResponse:
    """The variant of a user (``"holdout"``, or ``null`` when the experiment is not running)."""
    exp = _registry(state).get(name)
    now = datetime.now(UTC)
    variant = assign(exp, user_id, now).variant
    spec = next((v for v in exp.variants if v.name == variant), None)
    return OrjsonResponse(
        {
            "experiment": exp.name,
            "user_id": user_id,
            "variant": variant,
            "running": variant is not None,
            "model_version": spec.model_version if spec else None,
            "ranking": spec.ranking if spec else None,
        }
    )


admin = APIRouter(
    prefix="/v1/admin/experiments", tags=["admin"], dependencies=[Depends(require_key)]
)


@admin.get("")
def list_experiments(state: State) -> OrjsonResponse:
    """Every experiment, with whether it runs now."""
    now = datetime.now(UTC)
    registry = _registry(state)
    return OrjsonResponse(
        {
            "file": str(registry.path),
            "experiments": [
                {**_describe(e, registry), "running": e.is_running(now)} for e in registry.all()
            ],
        }
    )


@admin.get("/{name}")
def get_experiment(state: State, name: Name) -> OrjsonResponse:
    """One experiment's definition."""
    registry = _registry(state)
    return OrjsonResponse(_describe(registry.get(name), registry))


@admin.put("/{name}")
def put_experiment(
    state: State, name: Name, body: Annotated[dict[str, Any], Body()]
) -> OrjsonResponse:
    """Create or replace an experiment (the body is its definition as JSON); written to the
    experiments file at once. 422 names the bad field, or the variant whose rules file
    (``ranking``) is missing or invalid; the experiments in force are then unchanged."""
    registry = _registry(state)
    exp = registry.put({"name": name, **body}, name=name)
    return OrjsonResponse(_describe(exp, registry))


@admin.delete("/{name}")
def delete_experiment(state: State, name: Name) -> OrjsonResponse:
    """Remove an experiment from the file (its logged exposures stay)."""
    exp = _registry(state).delete(name)
    return OrjsonResponse({"deleted": exp.name})


router.include_router(admin)
