"""labkit: the helper package behind the scalable deep-learning teaching lab.

Notebooks call labkit; they don't reimplement it. The modules, one concept each:

- ``labkit.doctor``       -- what this machine has (versions, Horovod build, threads)
- ``labkit.distributed``  -- Horovod + Keras 3 glue (gradient averaging, broadcast, metrics)
- ``labkit.launch``       -- run a function on N Horovod workers from a notebook
- ``labkit.scaling``      -- scaling experiments, honest baselines, the analytic model
- ``labkit.viz``          -- visual instruments: attention, convolution, batch norm, gradient flow
- ``labkit.data``         -- small offline data sets (images, sequence tasks)
- ``labkit.models``       -- small Keras models the notebooks share
- ``labkit.grading``      -- author, release and grade assignments safely
- ``labkit.check``        -- ``check("q1")``: a student's self-check of the visible tests
- ``labkit.runner``       -- execute notebooks with papermill and write the report
- ``labkit.cli``          -- the ``labkit`` command line
"""

import os as _os

# TensorFlow's C++ INFO lines (CPU feature notices) confuse students; warnings and errors still show.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.1.0"

from labkit.check import check  # noqa: E402  (light: no TensorFlow; lets a notebook call labkit.check("q1"))
