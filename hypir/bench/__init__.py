"""Benchmarks of the model layer against the paths users run today, apart from the library code
(nothing in ``hypir`` imports them):

* :mod:`hypir.bench.restore` -- a whole restoration, ours vs ``Restorer(preset="released")``
  (``python -m hypir.bench.restore``);
* :mod:`hypir.bench.degrade` -- the Real-ESRGAN degradation on our ops vs BasicSR's
  (``python -m hypir.bench.degrade``);
* :mod:`hypir.bench.train` -- one HYPIR training step, ours vs plain peft + BasicSR ops
  (``python -m hypir.bench.train``).

``benchmarks/`` runs the same comparisons under pytest-benchmark.
"""
