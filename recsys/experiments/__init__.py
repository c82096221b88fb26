"""A/B experiments: definitions, assignment, analysis, statistics, reports, off-policy estimates.

Pure library code: nothing here talks to HTTP or the store. The serving layer assigns users with
:func:`assign`, logs exposures, and later feeds :class:`ExposureLog` / :class:`EventLog` read from
the store to :func:`ab_report`.
"""

from recsys.experiments.analysis import EventLog, ExperimentData, ExposureLog, analyse, attribute
from recsys.experiments.assignment import Assignment, assign, assign_many, bucket
from recsys.experiments.definitions import (
    HOLDOUT,
    Experiment,
    Variant,
    experiment_from_dict,
    load_experiment,
    load_experiments,
)
from recsys.experiments.report import ABReport, ab_report

__all__ = [
    "HOLDOUT",
    "ABReport",
    "Assignment",
    "EventLog",
    "Experiment",
    "ExperimentData",
    "ExposureLog",
    "Variant",
    "ab_report",
    "analyse",
    "assign",
    "assign_many",
    "attribute",
    "bucket",
    "experiment_from_dict",
    "load_experiment",
    "load_experiments",
]
