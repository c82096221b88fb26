"""The offline training pipeline: events in the store -> an evaluated, published model version.

Run it with ``recsys train``; see :mod:`training.pipeline` and :mod:`training.config`.
"""
