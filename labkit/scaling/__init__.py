"""labkit.scaling: measure how data-parallel training scales, honestly, and model why.

- :mod:`~labkit.scaling.harness`   -- run a grid of Horovod jobs into one tidy table
- :mod:`~labkit.scaling.workload`  -- the reference models, data and timed training loop
- :mod:`~labkit.scaling.baselines` -- speedup, efficiency and the single-process (COST) baseline
- :mod:`~labkit.scaling.timeline`  -- read Horovod's timeline: compute against allreduce per step
- :mod:`~labkit.scaling.model`     -- the analytic model (compute + ring allreduce − overlap)
- :mod:`~labkit.scaling.mirrored`  -- the same training under MultiWorkerMirroredStrategy
- :mod:`~labkit.scaling.plots`     -- figures (each takes data and an optional ``ax``)
- :mod:`~labkit.scaling.cli`       -- ``labkit scale``

None of these import TensorFlow in the process that plans and plots; the workers do.
"""
from labkit.scaling.baselines import summarize, with_speedups
from labkit.scaling.harness import Experiment, ScalingResults, environment, run_experiment

__all__ = ["Experiment", "ScalingResults", "environment", "run_experiment", "summarize", "with_speedups"]
