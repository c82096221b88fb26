"""The pieces every engine's training run shares (:mod:`training.stages`)."""

from __future__ import annotations


def test_a_thread_limit_reaches_implicits_solver_imported_after_it() -> None:
    """``threads = 1`` holds implicit's ALS solver too, in a process that has not imported
    implicit yet: a limit set before a runtime is loaded would not reach it."""
    import json
    import subprocess
    import sys

    script = (
        "import json, sys\n"
        "from training.config import TrainingConfig\n"
        "from training.stages import thread_limit\n"
        "assert 'implicit.cpu.als' not in sys.modules\n"
        "from threadpoolctl import threadpool_info\n"
        "with thread_limit(TrainingConfig(threads=1)):\n"
        "    print(json.dumps([i['num_threads'] for i in threadpool_info()\n"
        "                      if i['user_api'] == 'openmp']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    openmp = json.loads(out.stdout.strip().splitlines()[-1])
    assert openmp and set(openmp) == {1}
