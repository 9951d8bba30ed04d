"""Overhead of labkit's training instruments: epoch time of model.fit with the gradient-flow and
batch-norm recorders (default recording frequency) vs. no callbacks vs. Keras'
TensorBoard(histogram_freq=1), on the same model and data, side by side in one run.

A fourth condition, ``labkit_every1``, records at every step, to show what the recording
frequency costs. Each round fits every condition for 1 + EPOCHS epochs on a fresh copy of the same model (same
seed); the first epoch (tracing, warm-up) is dropped; conditions are interleaved and their order
rotates between rounds, so that load from other processes hits them alike. We report the median
epoch time per condition and its ratio to no callbacks, and the fastest epoch (least disturbed by
other processes on a shared machine).

    .venv/bin/python bench/instruments.py [--rounds 3] [--epochs 3] [--samples 2048]

Human lines first; the last line is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras  # noqa: E402
from labkit import data, models, viz  # noqa: E402


class EpochClock(keras.callbacks.Callback):
    """Wall time of each epoch, from one epoch's start to the next (so it includes every callback's
    epoch-end work, e.g. TensorBoard's histograms)."""

    def __init__(self):
        super().__init__()
        self.starts = []

    def on_epoch_begin(self, epoch, logs=None):
        self.starts.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.starts.append(time.perf_counter())

    @property
    def epochs(self):
        return list(np.diff(self.starts))


def tensorboard_available() -> bool:
    """Keras' TensorBoard callback needs the ``tensorboard`` package (tensorflow-cpu does not pull it in)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def conditions(logdir):
    made = {
        "none": lambda: [],
        "labkit": lambda: [viz.GradientFlowRecorder(), viz.BatchNormRecorder()],
        "labkit_every1": lambda: [viz.GradientFlowRecorder(every=1), viz.BatchNormRecorder(every=1)],
        "tensorboard": lambda: [keras.callbacks.TensorBoard(log_dir=os.path.join(logdir, f"tb{time.time_ns()}"),
                                                            histogram_freq=1)],
    }
    if not tensorboard_available():
        del made["tensorboard"]
    return made


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per fit (after one warm-up epoch)")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)

    x, y = data.shapes(n=args.samples, size=16, seed=0)
    steps = int(np.ceil(args.samples / args.batch))
    print(f"model: small_cnn(filters=(16, 32), batch_norm=True) on {args.samples} 16×16 shapes, "
          f"batch {args.batch} ({steps} steps/epoch); {args.rounds} rounds × {args.epochs} timed epochs")
    print(f"labkit recorders record every {viz.GradientFlowRecorder().every} steps (their default)")
    if not tensorboard_available():
        print("NOTE: the 'tensorboard' package is not installed (keras' TensorBoard callback needs it), so the "
              "TensorBoard condition is skipped and the comparison with it is null")
    times = {}
    with tempfile.TemporaryDirectory(prefix="labkit-bench-tb-") as logdir:
        makers = conditions(logdir)
        names = list(makers)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                model = models.small_cnn(input_shape=(16, 16, 1), classes=3, filters=(16, 32), batch_norm=True, seed=0)
                clock = EpochClock()
                model.fit(x, y, batch_size=args.batch, epochs=1 + args.epochs, verbose=0,
                          callbacks=[clock] + makers[name]())
                times.setdefault(name, []).extend(clock.epochs[1:])
                print(f"round {r + 1}: {name:<13} epochs {', '.join(f'{t:.3f}' for t in clock.epochs[1:])} s "
                      f"(warm-up {clock.epochs[0]:.2f} s)", flush=True)
    med = {k: float(np.median(v)) for k, v in times.items()}
    fastest = {k: float(np.min(v)) for k, v in times.items()}  # least disturbed by other processes' load
    ratio = {k: med[k] / med["none"] for k in med}
    tb = ratio.get("tensorboard")
    print("median epoch time: " + ", ".join(f"{k} {v:.3f} s" for k, v in med.items()))
    print("fastest epoch:     " + ", ".join(f"{k} {v:.3f} s" for k, v in fastest.items()))
    print(f"overhead: labkit {100 * (ratio['labkit'] - 1):+.1f}% (recording every step: "
          f"{100 * (ratio['labkit_every1'] - 1):+.1f}%), tensorboard(histogram_freq=1) "
          + (f"{100 * (tb - 1):+.1f}%" if tb else "not measured") + "  (target: labkit ≤ +15% and below TensorBoard)")
    result = {"bench": "instruments", "epoch_seconds": med, "ratio_labkit": round(ratio["labkit"], 4),
              "ratio_tensorboard": round(tb, 4) if tb else None,
              "ratio_labkit_every1": round(ratio["labkit_every1"], 4),
              "overhead_labkit_pct": round(100 * (ratio["labkit"] - 1), 2),
              "overhead_tensorboard_pct": round(100 * (tb - 1), 2) if tb else None,
              "within_15pct": bool(ratio["labkit"] <= 1.15),
              "below_tensorboard": bool(ratio["labkit"] < tb) if tb else None,
              # both parts of the target; null when TensorBoard could not be measured
              "target_met": bool(ratio["labkit"] <= 1.15 and ratio["labkit"] < tb) if tb else None,
              "epoch_seconds_min": fastest,
              "ratio_labkit_min": round(fastest["labkit"] / fastest["none"], 4),
              "rounds": args.rounds, "timed_epochs_per_fit": args.epochs, "steps_per_epoch": steps,
              "record_every": viz.GradientFlowRecorder().every, "cores": os.cpu_count()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
