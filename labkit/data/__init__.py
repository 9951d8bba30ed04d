"""Small offline data sets for the instruments and notebooks: nothing is downloaded, ever.

Images
- :func:`digits` -- scikit-learn's bundled 8×8 handwritten digits (1797 images, shipped with sklearn).
- :func:`shapes` -- procedurally drawn squares, circles and triangles on a small canvas.
- :func:`stripes` -- vertical vs horizontal stripes (what an edge filter should learn to tell apart).

Sequences (long-range tasks for recurrent nets, and interpretable tasks for attention)
- :func:`adding_problem` -- sum the two marked numbers of a long sequence (Hochreiter & Schmidhuber).
- :func:`copy_task` -- remember a few symbols, wait, then write them back.
- :func:`reversal_task` -- write the sequence backwards: its attention is an anti-diagonal.

Every generator takes a ``seed`` and returns numpy arrays, so runs are repeatable.

The generators live in topic modules (``images``, ``sequences``, ...); the names notebooks use are
re-exported here, so ``from labkit import data; data.digits()`` keeps working.
"""
from labkit.data.images import SHAPE_NAMES, digits, shapes, stripes
from labkit.data.sequences import adding_problem, copy_task, reversal_task, token_labels

__all__ = ["SHAPE_NAMES", "digits", "shapes", "stripes", "adding_problem", "copy_task", "reversal_task",
           "token_labels"]
