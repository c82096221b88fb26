"""Tiny training data whose right answers are obvious, built directly as TrainingData.

:func:`make_training_data` is a small reference builder (plain loops, no filters) so these
tests do not depend on the production builder; :func:`tiny_rows` is the two-group shop the
contract suite uses:

- items ``a0..a3`` (categories under ``Home``) and ``b0..b3`` (``Garden > Tools``);
- six customers ``ua0..ua5`` each buy three of the four ``a`` items (``ua{k}`` skips
  ``a{k % 4}``) in two orders, 20 and 3 days before ``as_of``, viewing them in a session;
- four customers ``ub0..ub3`` do the same with the ``b`` items, 30 and 15 days before.

So a group-A customer's best new item is the ``a`` item they skipped, for every model: the
personalised ones because the groups never mix, the popular and trending ones because group
A is larger and more recent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.interactions import TrainingData
from recsys.data.schema import MICROS_PER_DAY, EventFrame, EventRow
from recsys.data.vocab import Vocabulary

WEIGHTS = {"view": 1.0, "cart": 3.0, "purchase": 10.0}
AS_OF = 1_717_200_000 * 1_000_000  # 2024-06-01, a fixed instant: never the wall clock
CATEGORIES = {
    "a0": "Home > Kitchen",
    "a1": "Home > Kitchen",
    "a2": "Home > Bath",
    "a3": "Home > Bath",
    "b0": "Garden > Tools",
    "b1": "Garden > Tools",
    "b2": "Garden > Tools",
    "b3": "Garden > Tools",
}
GROUP_A = [0, 1, 2, 3]
GROUP_B = [4, 5, 6, 7]


def event(
    n: int,
    user: str,
    item: str,
    event_type: str,
    days_before: float,
    *,
    order: str | None = None,
    session: str | None = None,
) -> EventRow:
    """One event ``days_before`` the fixed :data:`AS_OF`."""
    ts = AS_OF - int(days_before * MICROS_PER_DAY)
    return EventRow(f"e{n}", user, session, item, event_type, ts, 1.0, None, order, None)


def make_training_data(
    rows: Sequence[EventRow],
    *,
    categories: dict[str, str] | None = None,
    as_of: int | None = None,
) -> TrainingData:
    """TrainingData from events by the plainest rules (weights summed, no decay, no filters)."""
    frame = EventFrame.from_rows(list(rows))
    users = Vocabulary.from_values(r.user_id for r in rows if r.user_id)
    items = Vocabulary.from_values(r.item_id for r in rows)
    ev_user = users.indices(frame.user_id)
    ev_item = items.indices(frame.item_id)
    weight = np.array([WEIGHTS.get(t, 0.0) for t in frame.event_type])
    ok = ev_user >= 0
    interactions = sp.csr_matrix(
        (weight[ok], (ev_user[ok], ev_item[ok])), shape=(len(users), len(items)), dtype=np.float32
    )
    interactions.eliminate_zeros()
    bought: dict[tuple[int, int], set[object]] = defaultdict(set)
    baskets: dict[object, set[int]] = defaultdict(set)
    sessions: dict[object, set[int]] = defaultdict(set)
    for r, u, i in zip(rows, ev_user.tolist(), ev_item.tolist(), strict=True):
        if r.event_type == "purchase":
            if u >= 0:
                bought[(u, i)].add(r.order_id or r.event_id)
            if r.order_id:
                baskets[r.order_id].add(i)
        elif r.event_type == "view" and r.session_id:
            sessions[r.session_id].add(i)
    pc = sp.dok_matrix((len(users), len(items)), dtype=np.float32)
    for (u, i), orders in bought.items():
        pc[u, i] = len(orders)

    def binary(groups: dict[object, set[int]]) -> sp.csr_matrix:
        m = sp.dok_matrix((len(groups), len(items)), dtype=np.float32)
        for r, members in enumerate(groups[k] for k in sorted(groups, key=str)):
            for i in members:
                m[r, i] = 1.0
        return sp.csr_matrix(m)

    cats = categories or {}
    return TrainingData(
        users=users,
        items=items,
        interactions=interactions,
        purchase_counts=sp.csr_matrix(pc),
        events=frame,
        event_user=ev_user,
        event_item=ev_item,
        orders=binary(baskets),
        sessions=binary(sessions),
        item_category=[cats.get(i, "") for i in items.ids],
        item_price=np.full(len(items), np.nan),
        as_of=int(frame.ts.max()) if as_of is None else as_of,
    )


def tiny_rows() -> list[EventRow]:
    """Events of the two-group shop described in the module docstring."""
    rows: list[EventRow] = []
    groups = [("ua", "a", 6, (20.0, 3.0)), ("ub", "b", 4, (30.0, 15.0))]
    for user_prefix, item_prefix, n_users, days in groups:
        for k in range(n_users):
            user = f"{user_prefix}{k}"
            basket = [f"{item_prefix}{j}" for j in range(4) if j != k % 4]
            for visit, d in enumerate(days):
                session, order = f"s-{user}-{visit}", f"o-{user}-{visit}"
                for item in basket:
                    rows.append(event(len(rows), user, item, "view", d, session=session))
                    rows.append(event(len(rows), user, item, "purchase", d, order=order))
    return rows


@pytest.fixture(scope="session")
def tiny_data() -> TrainingData:
    """The two-group shop (10 users × 8 items); ``as_of`` is :data:`AS_OF`."""
    return make_training_data(tiny_rows(), categories=CATEGORIES, as_of=AS_OF)
