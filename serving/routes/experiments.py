"""A/B experiments in the API: assignment lookup and admin CRUD.

Serving a list under a variant (the arm, exploration, the exposure record) is decided in
:class:`recsys.service.RecommendationService`. An admin change is written to the experiments
file and raises the store's generation, so every worker re-reads the file within the live
refresh interval.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path

from recsys.errors import NotFoundError
from recsys.experiments.assignment import assign
from recsys.experiments.definitions import Experiment
from recsys.experiments.registry import ExperimentRegistry
from serving.deps import State, read_access, require_key
from serving.responses import OrjsonResponse
from serving.routes.common import PathId
from serving.state import ServingState

router = APIRouter(tags=["experiments"])

Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


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


@router.get("/v1/experiments/{name}/assignment/{user_id:id}", dependencies=[Depends(read_access)])
def assignment(state: State, name: Name, user_id: PathId) -> OrjsonResponse:
    """The variant of a user (``"holdout"``, or ``null`` when the experiment is not running)."""
    registry = _registry(state)
    exp = next((e for e in registry.all() if e.name == name), None)
    if exp is None:
        # a read without a key: name nothing else (no file path, no other experiment)
        raise NotFoundError(f"no experiment named {name!r}")
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
    state.store.notify_change()
    return OrjsonResponse(_describe(exp, registry))


@admin.delete("/{name}")
def delete_experiment(state: State, name: Name) -> OrjsonResponse:
    """Remove an experiment from the file (its logged exposures stay)."""
    exp = _registry(state).delete(name)
    state.store.notify_change()
    return OrjsonResponse({"deleted": exp.name})


router.include_router(admin)
