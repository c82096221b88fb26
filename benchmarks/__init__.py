"""Benchmarks: speed, scale, basket completion and serving (``python -m benchmarks.run``).

Results, with the machine, date and exact command of every figure, are in
``benchmarks/RESULTS.md``.
"""
