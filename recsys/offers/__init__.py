"""Personalised offers: promotions as data, triggers, segments, expected-value ranking, campaigns.

=====================  ===========================================================
module                 what it holds
=====================  ===========================================================
``catalog``            the promotions file and its validation
``triggers``           the right moment: birthday, replenishment, win-back, cross-sell
``segments``           RFM scores, k-means clusters, readable segment labels
``eligibility``        validity, targeting, consents, redemption and frequency caps
``ranking``            expected value per (item, promotion); :func:`rank_offers_for_user`
``campaigns``          ``recsys campaigns run``: a day's sends, recorded once
``store``              the offer tables of the event store
=====================  ===========================================================
"""

from __future__ import annotations

from recsys.offers.catalog import Promotion, PromotionCatalog, load_promotions, parse_promotions
from recsys.offers.ranking import OfferCandidate, OfferContext, build_context, rank_offers_for_user
from recsys.offers.segments import SegmentTable, compute_segments
from recsys.offers.store import store_segments

__all__ = [
    "OfferCandidate",
    "OfferContext",
    "Promotion",
    "PromotionCatalog",
    "SegmentTable",
    "build_context",
    "compute_segments",
    "load_promotions",
    "parse_promotions",
    "rank_offers_for_user",
    "store_segments",
]
