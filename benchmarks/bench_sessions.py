"""Guests: next-item hit rate of session lists on real browsing data (YooChoose sample).

Rolling origin: ``--cuts`` cut times spread over the last part of the week; for each, the
"often viewed with" model is trained (``CooccurrenceModel(source="session")``, as training
publishes it) on the sessions that ended before the cut, and every later session with at least
two distinct viewed items is replayed: the last item is hidden and the earlier ones rank the
catalogue. Compared in the same run:

(the model's settings are read from ``[models.viewed_with]`` in the default training config,
and the recency half-life is :data:`recsys.engine.SESSION_HALF_LIFE`: both chosen by this
benchmark's mean over the cuts; ``--params`` and ``--half-life`` try others)

* ``session list``: what ``GET /v1/sessions/{id}/recommendations`` ranks by
  (:func:`recsys.engine.neighbour_scores` with :func:`recsys.engine.session_weights`, the
  product's own functions);
* ``often viewed with``: the neighbours of the item viewed just before (what
  ``GET /v1/items/{id}/often-viewed-with`` answers for it);
* ``session-kNN``: the classic baseline (Jannach & Ludewig 2017): the 100 training sessions most
  similar (cosine over viewed items) to the session so far vote for their items;
* ``popularity``: views in the training sessions.

``python -m benchmarks.bench_sessions [--smoke] [--cuts 4] [--params '{"alpha": 0.8}']
[--half-life 2]``
"""

from __future__ import annotations

import csv
import gzip
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmarks.common import SHARED_DATA, base_parser, out_dir
from recsys.data.interactions import InteractionConfig, build_training_data
from recsys.data.schema import EventFrame, EventRow
from recsys.engine import SESSION_HALF_LIFE, neighbour_scores, session_weights
from recsys.models.cooccurrence import CooccurrenceModel
from training.config import load_training_config

DATA = SHARED_DATA / "yoochoose_clicks_100k.csv.gz"
K = 10
NEIGHBOUR_SESSIONS = 100


def _read(path: Path, limit: int | None) -> EventFrame:
    rows: list[EventRow] = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            ts = int(float(r["timestamp"]) * 1_000_000)
            rows.append(
                EventRow(
                    r["event_id"],
                    "",
                    r["session_id"],
                    r["item_id"],
                    "view",
                    ts,
                    1.0,
                    None,
                    None,
                    None,
                )
            )
            if limit and len(rows) >= limit:
                break
    return EventFrame.from_rows(rows)


def _sessions(events: EventFrame) -> dict[str, tuple[int, int, list[str]]]:
    """session -> (first ts, last ts, items in time order)."""
    order = np.lexsort((events.ts, events.session_id.astype(str)))
    out: dict[str, tuple[int, int, list[str]]] = {}
    for i in order.tolist():
        sid = str(events.session_id[i])
        ts = int(events.ts[i])
        first, _, items = out.get(sid, (ts, ts, []))
        items.append(str(events.item_id[i]))
        out[sid] = (first, ts, items)
    return out


def _top(scores: np.ndarray, k: int) -> list[int]:
    s = np.where(np.isnan(scores), -np.inf, scores)
    if not np.isfinite(s).any():
        return []
    top = np.argpartition(-s, min(k, len(s) - 1))[:k]
    top = top[np.argsort(-s[top], kind="stable")]
    return [int(i) for i in top if np.isfinite(s[i])]


def _fill(ranked: list[int], popular: list[int], k: int) -> list[int]:
    """Every method backfills from popularity to ``k`` items, as the API's rules do."""
    seen = set(ranked)
    return ranked + [i for i in popular if i not in seen][: k - len(ranked)]


def evaluate_cut(
    events: EventFrame,
    sessions: dict[str, tuple[int, int, list[str]]],
    cut: int,
    *,
    params: dict[str, Any],
    half_life: float = SESSION_HALF_LIFE,
) -> dict[str, float]:
    """Hit rate@10 and MRR@10 of each method for the sessions that start after ``cut``, with
    the "often viewed with" model built from ``params``."""
    train = events.select(events.ts < cut)
    data = build_training_data(
        train, InteractionConfig(weights={"view": 1.0}, half_life_days=None), as_of=cut
    )
    model = CooccurrenceModel(**params).fit(data)
    neighbours = model.neighbours
    vocab = data.items
    n = len(vocab)
    counts = np.asarray(data.sessions.sum(axis=0)).ravel()
    popular = [int(i) for i in np.lexsort((np.arange(n), -counts))[: 4 * K]]
    train_sessions = sp.csr_matrix(data.sessions, dtype=np.float32)
    norms = np.sqrt(np.asarray(train_sessions.multiply(train_sessions).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    hits: dict[str, list[float]] = {m: [] for m in ("session", "viewed_with", "sknn", "popular")}
    ranks: dict[str, list[float]] = {m: [] for m in hits}
    for first, _, items in sessions.values():
        if first < cut:
            continue
        idx = vocab.indices(items)
        target = int(idx[-1])
        before = idx[:-1]
        if target < 0 or len(before) == 0 or before[-1] == target or (before < 0).all():
            continue
        known = before[before >= 0]
        weights = session_weights(len(before), half_life)[before >= 0]
        lists = {
            "session": _top(neighbour_scores(model, known, n, neighbours, weights), K),
            "viewed_with": (
                _top(neighbour_scores(model, before[-1:], n, 4 * K + 20), K)
                if before[-1] >= 0
                else []
            ),
            "popular": [],
        }
        q = np.zeros(n, dtype=np.float32)
        q[known] = 1.0
        sims = (train_sessions @ q) / (norms * np.sqrt(len(set(known.tolist()))))
        near = np.argpartition(-sims, min(NEIGHBOUR_SESSIONS, len(sims) - 1))[:NEIGHBOUR_SESSIONS]
        near = near[sims[near] > 0]
        votes = sp.csr_matrix(sims[near][None, :]) @ train_sessions[near]
        sknn = np.asarray(votes.todense()).ravel() if near.size else np.zeros(n)
        sknn[sknn == 0] = np.nan
        lists["sknn"] = _top(sknn, K)
        for name, ranked in lists.items():
            full = _fill(ranked, popular, K)
            if target in full:
                hits[name].append(1.0)
                ranks[name].append(1.0 / (full.index(target) + 1))
            else:
                hits[name].append(0.0)
                ranks[name].append(0.0)
    out: dict[str, float] = {"sessions": float(len(hits["session"]))}
    for name in hits:
        out[f"{name}_hit"] = float(np.mean(hits[name])) if hits[name] else float("nan")
        out[f"{name}_mrr"] = float(np.mean(ranks[name])) if ranks[name] else float("nan")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--cuts", type=int, default=4)
    parser.add_argument(
        "--params", type=json.loads, default={}, help="JSON over [models.viewed_with]'s params"
    )
    parser.add_argument("--half-life", type=float, default=SESSION_HALF_LIFE)
    args = parser.parse_args(argv)
    params = {**load_training_config().models["viewed_with"].params, **args.params}
    if not DATA.exists():
        print(f"skipped: {DATA} is absent")
        return 0
    events = _read(DATA, 20_000 if args.smoke else None)
    sessions = _sessions(events)
    lo, hi = int(events.ts.min()), int(events.ts.max())
    # cuts over the last 40% of the week, each with sessions after it to test on
    cuts = [int(lo + (hi - lo) * f) for f in np.linspace(0.6, 0.9, max(args.cuts, 1))]
    results = [
        evaluate_cut(events, sessions, c, params=params, half_life=args.half_life) for c in cuts
    ]
    methods = ("session", "viewed_with", "sknn", "popular")
    summary: dict[str, dict[str, float]] = {}
    for m in methods:
        for metric in ("hit", "mrr"):
            vals = [r[f"{m}_{metric}"] for r in results]
            summary[f"{m}_{metric}"] = {
                "mean": round(statistics.fmean(vals), 4),
                "sd": round(statistics.pstdev(vals), 4),
                "min": round(min(vals), 4),
                "max": round(max(vals), 4),
            }
    ratios = {
        "session/sknn": [r["session_hit"] / r["sknn_hit"] for r in results],
        "session/popular": [r["session_hit"] / r["popular_hit"] for r in results],
        "viewed_with/popular": [r["viewed_with_hit"] / r["popular_hit"] for r in results],
    }
    report = {
        "params": params,
        "half_life": args.half_life,
        "cuts": len(results),
        "sessions_per_cut": [int(r["sessions"]) for r in results],
        "hit_per_cut": {m: [round(r[f"{m}_hit"], 4) for r in results] for m in methods},
        "summary": summary,
        "ratios": {k: [round(x, 2) for x in v] for k, v in ratios.items()},
    }
    print(json.dumps(report, indent=2))
    (out_dir(args) / "sessions.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
