"""The offline training pipeline: events in the store -> an evaluated, published model version.

Run it with ``recsys train``. :mod:`training.pipeline` runs the stages on one machine and
:mod:`training.spark` on a Spark cluster; both judge their models on the holdout of
:mod:`training.holdout`, publish through :mod:`training.publish` and report their stages with
:mod:`training.stages`. The config is :mod:`training.config`; warm starts,
:mod:`training.warm`.
"""
