"""The experiments, declared one short entry each, grouped by topic (one module per topic).

Importing this package registers every experiment in :data:`benchmarks.harness.EXPERIMENTS`; run one with
``python -m benchmarks run NAME`` (``python -m benchmarks list`` names them all).
"""

from benchmarks.experiments import heads, long_inputs, position, reranking, serving, speed, trimming  # noqa: F401
from benchmarks.harness import EXPERIMENTS

__all__ = ["EXPERIMENTS"]
