"""The serving benchmark's reference: a bare FastAPI app doing only the ALS top-k arithmetic.

``GET /v1/users/{user_id}/recommendations?k=10`` looks the user up, computes
``user_factors[u] @ item_factors.T``, takes the top ``k`` with ``argpartition`` and returns
the item ids: no rules, no history, no fallbacks, no metrics. The real API doing that and more
is compared with it. Reads the ALS model of a registry version folder named by
``REFERENCE_VERSION_DIR``.

Run: ``REFERENCE_VERSION_DIR=... uvicorn benchmarks.reference_app:app --port 8001``
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException


def create_app(version_dir: Path) -> FastAPI:
    """The reference app over the ALS factors of one version folder."""
    factors = np.load(version_dir / "models" / "als" / "factors.npz", allow_pickle=False)
    user_factors = np.ascontiguousarray(factors["user_factors"], dtype=np.float32)
    item_factors = np.ascontiguousarray(factors["item_factors"], dtype=np.float32)
    users = json.loads((version_dir / "users.json").read_text(encoding="utf-8"))
    items = np.asarray(json.loads((version_dir / "items.json").read_text(encoding="utf-8")))
    index = {u: i for i, u in enumerate(users)}
    app = FastAPI()

    # the mixed-traffic benchmark's unknown customers: the items with the largest factor norms
    popular = np.argsort(-np.linalg.norm(item_factors, axis=1))[:100]

    @app.get("/v1/users/{user_id}/recommendations")
    def recommendations(user_id: str, k: int = 10) -> dict[str, Any]:
        u = index.get(user_id)
        if u is None:
            if user_id.startswith("stranger-"):
                return {"user_id": user_id, "items": [str(items[i]) for i in popular[:k]]}
            raise HTTPException(404, "unknown user")
        scores = item_factors @ user_factors[u]
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        return {"user_id": user_id, "items": [str(items[i]) for i in top]}

    @app.get("/v1/users/{user_id}/offers")
    def offers(user_id: str, k: int = 10) -> dict[str, Any]:
        # exact scoring, as for a list: the reference has no promotions to rank
        return recommendations(user_id, k)

    @app.post("/v1/events")
    def events(body: list[dict[str, Any]]) -> dict[str, Any]:
        # accepted and dropped: the reference does no write (which flatters it)
        return {"inserted": len(body), "duplicates": 0}

    return app


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory``: reads ``REFERENCE_VERSION_DIR``."""
    return create_app(Path(os.environ["REFERENCE_VERSION_DIR"]))
