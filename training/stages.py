"""What every engine's training run is built from: its stages' progress (timings, CPU
seconds, peak memory), its notices, the models its config makes and the threads they fit on.

The local run (:mod:`training.pipeline`) and Spark's (:mod:`training.spark.engine`) share these,
so that a manifest's timings, a model's parameters and a skipped model's notice read the same
whichever engine trained the version.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from recsys.data.schema import from_micros
from recsys.errors import ModelError
from recsys.models.hybrid import HybridModel
from recsys.models.orders import RepeatChoice
from training.config import TrainingConfig

log = logging.getLogger("training")

#: Receives a run's one-line notices (a skipped model, the promotion decision).
Notify = Callable[[str], None]

#: The stages a run's progress bar counts (a run may time others, e.g. ``segments``).
STAGES = ("read", "build", "evaluate", "fit", "publish", "promote")

#: The serving version's hybrid choices by model name (:func:`training.holdout.serving_choices`).
Choices = Mapping[str, RepeatChoice]


def print_notice(message: str) -> None:
    """The default :data:`Notify`: ``message`` on a line of stderr, at once."""
    print(message, file=sys.stderr, flush=True)


def make_model(name: str, config: TrainingConfig, held: Choices | None = None) -> Any:
    """A new, unfitted model ``name`` of ``config`` (its class and params from
    ``[models.<name>]``); a hybrid holds the serving version's choice of its order when
    ``held`` has one for it (:meth:`~recsys.models.hybrid.HybridModel.hold_choice`)."""
    from recsys.models import model_class

    spec = config.models[name]
    model = model_class(spec.model or name)(**spec.params)
    if held and name in held and isinstance(model, HybridModel):
        model.hold_choice(held[name])
    return model


def fit_threads(config: TrainingConfig) -> int:
    """BLAS/OpenMP threads for evaluating and fitting: ``threads``, or every core for 0.

    An explicit count, not "no limit": OPENBLAS_NUM_THREADS=1 (what serving wants) would
    otherwise keep training on one core too.
    """
    return config.threads or os.cpu_count() or 1


def thread_limit(config: TrainingConfig) -> Any:
    """``threadpool_limits`` to :func:`fit_threads` for a block that evaluates or fits.

    A limit reaches only the runtimes loaded when the block opens, and implicit's ALS solver
    (its own OpenMP runtime, loaded on its first import) would run on every core under a
    ``threads = 1`` the user set: it is loaded first.
    """
    import implicit.cpu.als  # noqa: F401  (loads the OpenMP runtime the limit must reach)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=fit_threads(config))


def skip_model(name: str, exc: ModelError, skipped: dict[str, str], notify: Notify) -> None:
    """Record in ``skipped`` that model ``name`` is not trained, with ``exc`` as the reason
    (the manifest's ``skipped_models``), and say so in a notice."""
    skipped[name] = str(exc)
    notify(f"notice: model {name!r} skipped: {exc}")


def jsonable(value: Any) -> Any:
    """``value`` as the manifest's JSON can hold it: numpy scalars as Python numbers, tuples
    as lists, keys as strings, anything else unknown as its ``repr``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def iso_time(us: int) -> str:
    """Microseconds UTC as an ISO 8601 datetime with its zone (as manifests write times)."""
    return from_micros(us).isoformat()


def peak_rss_mib() -> float:
    """The process's peak resident memory so far, in MiB (``ru_maxrss``: KiB on Linux).

    A high-water mark, never lowered: read after a stage, it is the peak of every stage up to
    and including that one, which is what a memory limit on the whole run has to allow for.
    """
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # macOS reports bytes, Linux KiB
    return round(kib / (2**20 if sys.platform == "darwin" else 2**10), 1)


class Progress:
    """A stage bar on stderr (hidden when stderr is not a terminal), per-stage timings, CPU
    seconds (``cpu_seconds``: every thread of the process; on a loaded machine the wall time
    says more about the neighbours than about the stage) and the peak resident memory at the
    end of each stage (``peaks``, MiB)."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.cpu_seconds: dict[str, float] = {}
        self.peaks: dict[str, float] = {}

    def __enter__(self) -> Progress:
        from tqdm import tqdm

        self.bar = tqdm(
            total=len(STAGES), desc="train", unit="stage", file=sys.stderr, disable=None
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name``: its wall and CPU seconds and the peak memory at
        its end, kept even when it raises; the bar moves on when it returns."""
        self.bar.set_postfix_str(name)
        start = time.perf_counter()
        cpu = time.process_time()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - start
            self.cpu_seconds[name] = time.process_time() - cpu
            self.peaks[name] = peak_rss_mib()
            log.info(
                "stage %s: %.2f s, peak memory %.0f MiB", name, self.timings[name], self.peaks[name]
            )
        self.bar.update(1)
