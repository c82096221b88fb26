"""Recommendation models behind one interface (:class:`recsys.models.base.Recommender`)."""
