"""From events to training data: weighted user×item matrices, baskets and sessions.

:func:`build_training_data` is the one place that turns an :class:`~recsys.data.schema.EventFrame`
into what models fit on; :func:`history_matrix` applies the *same* weighting to a few users'
live events at serving time, so a customer's next request already reflects what they just did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import Field

from recsys.config import StrictModel
from recsys.data.schema import EventFrame
from recsys.data.vocab import Vocabulary


class InteractionConfig(StrictModel):
    """How events become interaction weights."""

    weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "cart": 3.0, "purchase": 10.0},
        description="Weight per event type; types not listed weigh 0 (ignored).",
    )
    quantity: str = Field(
        default="log",
        pattern="^(ignore|log|linear)$",
        description="How a purchase's quantity scales its weight: ignore, log (1+log q), linear.",
    )
    returns_cancel: bool = Field(
        default=True, description="A return cancels the matching purchased quantity."
    )
    half_life_days: float | None = Field(
        default=None, gt=0, description="Recency decay: an event this old weighs half."
    )
    window_days: float | None = Field(
        default=None, gt=0, description="Only events this recent (before as_of) are used."
    )
    min_user_events: int = Field(default=1, ge=1, description="Drop users with fewer events.")
    min_item_users: int = Field(default=1, ge=1, description="Drop items with fewer users.")


@dataclass(frozen=True)
class TrainingData:
    """Everything models fit on, indexed by the two vocabularies.

    Attributes
    ----------
    users, items
        Vocabularies of the customers and products that survived the filters.
    interactions
        ``users × items`` float32 CSR of weighted (and decayed) interactions.
    purchase_counts
        ``users × items`` float32 CSR: in how many distinct orders the user bought the item,
        net of returns (the repeat-buying signal).
    events
        The events used (after the window and filters), oldest first.
    event_user, event_item
        Per event, the user and item index (``-1`` for guests and dropped ids).
    orders
        ``orders × items`` binary CSR, one row per order with at least one purchased item:
        the baskets behind "bought together".
    sessions
        ``sessions × items`` binary CSR of items viewed together in a session: the source of
        "often viewed with". Zero rows when there are no views.
    item_category
        Category path per item index (``""`` when unknown).
    item_price
        Price per item index (``NaN`` when unknown).
    as_of
        The time training is measured from (microseconds UTC): the newest event, or a given
        ``--as-of``. Never the wall clock.
    """

    users: Vocabulary
    items: Vocabulary
    interactions: sp.csr_matrix
    purchase_counts: sp.csr_matrix
    events: EventFrame
    event_user: NDArray[np.intp]
    event_item: NDArray[np.intp]
    orders: sp.csr_matrix
    sessions: sp.csr_matrix
    item_category: list[str]
    item_price: NDArray[np.float64]
    as_of: int

    @property
    def n_users(self) -> int:
        """Number of users."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Number of items."""
        return len(self.items)
