"""labkit: the helper package behind the scalable deep-learning teaching lab.

Notebooks call labkit; they don't reimplement it. The modules, one concept each:

- ``labkit.doctor``       -- what this machine has (versions, Horovod build, threads)
- ``labkit.distributed``  -- Horovod + Keras 3 glue (gradient averaging, broadcast, metrics)
- ``labkit.runner``       -- execute notebooks with papermill and write the report
- ``labkit.cli``          -- the ``labkit`` command line
"""

import os as _os

# TensorFlow's C++ INFO lines (CPU feature notices) confuse students; warnings and errors still show.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.1.0"
