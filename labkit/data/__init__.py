"""Small offline data sets for the instruments and notebooks: nothing is downloaded, ever.

Images
- :func:`digits` -- scikit-learn's bundled 8×8 handwritten digits (1797 images, shipped with sklearn).
- :func:`shapes` -- procedurally drawn squares, circles and triangles on a small canvas.
- :func:`stripes` -- vertical vs horizontal stripes (what an edge filter should learn to tell apart).

Sequences (long-range tasks for recurrent nets, and interpretable tasks for attention)
- :func:`adding_problem` -- sum the two marked numbers of a long sequence (Hochreiter & Schmidhuber).
- :func:`copy_task` -- remember a few symbols, wait, then write them back.
- :func:`reversal_task` -- write the sequence backwards: its attention is an anti-diagonal.

Tables, logs and shards (the data-pipeline, Spark and linear-model labs)
- :func:`write_raw_shop`, :func:`run_etl` -- a web shop's dirty CSV/JSON-lines logs, and their ETL
  into Parquet (``labkit.data.etl``).
- :func:`logistic_data` -- features and labels from a sparse logistic model with known weights.
- :func:`write_shards`, :func:`write_synthetic_shards`, :class:`Shards` -- data sets on disk in
  shards, streamed back in mini-batches (``labkit.data.shards``; page-cache tools there too).
- ``labkit.data.pipeline`` -- measuring ``tf.data`` input throughput (imports TensorFlow on use).

Every generator takes a ``seed`` and returns numpy arrays, so runs are repeatable.

The generators live in topic modules (``images``, ``sequences``, ...); the names notebooks use are
re-exported here, so ``from labkit import data; data.digits()`` keeps working.
"""
from labkit.data.etl import run_etl, write_raw_shop
from labkit.data.images import SHAPE_NAMES, digits, shapes, stripes
from labkit.data.sequences import adding_problem, copy_task, reversal_task, token_labels
from labkit.data.shards import Shards, write_shards, write_synthetic_shards
from labkit.data.tabular import logistic_data

__all__ = ["SHAPE_NAMES", "digits", "shapes", "stripes", "adding_problem", "copy_task", "reversal_task",
           "token_labels", "run_etl", "write_raw_shop", "logistic_data", "Shards", "write_shards",
           "write_synthetic_shards"]
