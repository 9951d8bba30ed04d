"""What a scaling experiment trains: reference models, a learnable synthetic data set, and the
training loop that runs on every worker and times each step.

Everything here runs *inside* worker processes (TensorFlow is imported lazily), so that the
notebook process that plans and plots an experiment never starts TensorFlow itself.

Models (``MODELS``):

- ``"cnn"``: the compute-bound reference CNN (4 conv layers, ~66 k parameters, ~150 MFLOP per
  image for forward and backward). Lots of arithmetic per byte of gradient: scales well.
- ``"mlp"``: a communication-bound multilayer perceptron (~1.8 M parameters, ~11 MFLOP per
  image). Little arithmetic per byte of gradient: the allreduce dominates, as it does for VGG-16.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

MODELS = ("cnn", "mlp")
NUM_CLASSES = 10


@dataclass(frozen=True)
class RunSpec:
    """One training run on one worker count: what to train and how long."""

    model: str = "cnn"
    per_worker_batch: int = 32
    steps: int = 30              # timed steps (after the warm-up steps)
    warmup_steps: int = 5        # excluded from throughput and step time (tracing, caches)
    base_lr: float = 0.05        # learning rate for a global batch of ``base_batch``
    base_batch: int = 32
    lr_scaling: str = "linear"   # "linear" (Goyal et al. 2017) or "none"
    lr_warmup_steps: int = 5     # gradual warm-up from base_lr to the scaled rate
    target_accuracy: float | None = None
    image_size: int = 32
    dataset_size: int = 2048
    seed: int = 0
    scaling: str = "weak"        # recorded in the table: "weak" or "strong"

    def learning_rate(self, global_batch: int, step: int) -> float:
        """Linear scaling rule with gradual warm-up: base_lr · global_batch / base_batch."""
        target = self.base_lr * (global_batch / self.base_batch if self.lr_scaling == "linear" else 1.0)
        if step < self.lr_warmup_steps and target > self.base_lr:
            return self.base_lr + (target - self.base_lr) * (step + 1) / self.lr_warmup_steps
        return target

    def as_dict(self) -> dict:
        return asdict(self)


def make_dataset(size: int, image_size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A learnable synthetic image set: class ``c`` is a colored stripe pattern (its own
    orientation, frequency and color) at a random phase, plus noise.

    Every worker builds the same set from ``seed`` and trains on its own shard; nothing is
    downloaded.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, NUM_CLASSES, size=size)
    angle = np.pi * np.arange(NUM_CLASSES) / NUM_CLASSES
    freq = 2.0 + (np.arange(NUM_CLASSES) % 3)
    colors = rng.normal(size=(NUM_CLASSES, 3)).astype("float32")
    grid = np.arange(image_size, dtype="float32") / image_size
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    phase = rng.uniform(0, 2 * np.pi, size=size).astype("float32")
    wave = np.cos(2 * np.pi * freq[y, None, None] * (xx * np.cos(angle[y, None, None]) + yy * np.sin(angle[y, None, None]))
                  + phase[:, None, None])
    x = wave[..., None] * colors[y, None, None, :] + rng.normal(size=(size, image_size, image_size, 3))
    return x.astype("float32"), y.astype("int32")


def build_model(name: str, image_size: int = 32, seed: int = 0):
    """A fresh Keras model, identical for the same ``seed`` (``MODELS`` lists the names)."""
    import keras

    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    if name == "cnn":
        body = [layers.Conv2D(32, 3, padding="same", activation="relu"),
                layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
                layers.Conv2D(64, 3, padding="same", activation="relu"),
                layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
                layers.GlobalAveragePooling2D()]
    else:
        body = [layers.Flatten(), layers.Dense(512, activation="relu"), layers.Dense(512, activation="relu")]
    return keras.Sequential([keras.Input((image_size, image_size, 3)), *body, layers.Dense(NUM_CLASSES)], name=name)


def parameter_count(name: str, image_size: int = 32) -> int:
    """Trainable parameters of a reference model (what one allreduce per step must move)."""
    return int(sum(np.prod(v.shape) for v in build_model(name, image_size).trainable_variables))


# --------------------------------------------------------------------------------------------
# The collective operations, with or without Horovod
# --------------------------------------------------------------------------------------------
@dataclass
class _Comm:
    """Rank, size and collectives: Horovod's in a Horovod job, the identity in a single process."""

    rank: int = 0
    size: int = 1
    horovod: bool = False

    @classmethod
    def detect(cls) -> "_Comm":
        try:
            import horovod.tensorflow as hvd

            return cls(hvd.rank(), hvd.size(), True)
        except (ImportError, ValueError):  # ValueError: Horovod was not initialised (plain process)
            return cls()

    def average_gradients(self, grads):
        if not self.horovod or self.size == 1:
            return grads
        from labkit import distributed

        return distributed.average_gradients(grads)

    def broadcast(self, model, optimizer):
        if self.horovod:
            from labkit import distributed

            distributed.broadcast_state(model, optimizer)
        elif not optimizer.built:
            optimizer.build(model.trainable_variables)

    #: multiply the loss by this before differentiating (1 unless the strategy sums gradients)
    loss_scale: float = 1.0

    def scope(self):
        """The context models and optimizers are created in (a distribution strategy's scope)."""
        import contextlib

        return contextlib.nullcontext()

    def compile_step(self, step):
        """``step(x, y) -> (loss, accuracy)`` as it should run on this backend."""
        import tensorflow as tf

        return tf.function(step)

    def mean(self, values: list[float]) -> list[float]:
        if not self.horovod or self.size == 1:
            return list(values)
        import horovod.tensorflow as hvd
        import tensorflow as tf

        out = hvd.allreduce(tf.constant(values, tf.float64), op=hvd.Average, name="labkit.scaling.mean")
        return [float(v) for v in out.numpy()]


# --------------------------------------------------------------------------------------------
# The training loop every worker runs
# --------------------------------------------------------------------------------------------
@dataclass
class TrialRecord:
    """What one worker measured in one trial (rank 0's record goes into the table)."""

    spec: dict
    trial: int
    workers: int
    rank: int
    step_seconds: list = field(default_factory=list)   # every step, warm-up included
    losses: list = field(default_factory=list)
    accuracies: list = field(default_factory=list)
    learning_rates: list = field(default_factory=list)
    final_loss: float = float("nan")                   # averaged over ranks and the last steps
    final_accuracy: float = float("nan")
    threads: int = 0


def train_trials(specs: list[RunSpec], trials: int = 1, comm: _Comm | None = None,
                 show_progress: bool = True) -> list[TrialRecord]:
    """Run every spec ``trials`` times on this worker; return the records (rank 0's are the ones used).

    Runs unchanged on one Horovod worker, on N Horovod workers (gradients averaged each step)
    and in a plain single process (the baseline).
    """
    import keras
    import tensorflow as tf

    from labkit import launch

    comm = comm or _Comm.detect()
    records = []
    total_steps = sum(s.warmup_steps + s.steps for s in specs) * trials
    done = 0
    for trial in range(trials):
        for spec in specs:
            x_all, y_all = make_dataset(spec.dataset_size, spec.image_size, spec.seed)
            x, y = x_all[comm.rank::comm.size], y_all[comm.rank::comm.size]  # this worker's shard
            with comm.scope():
                model = build_model(spec.model, spec.image_size, spec.seed)
                optimizer = keras.optimizers.SGD(learning_rate=spec.base_lr, momentum=0.9)
            loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

            def step(xb, yb, model=model, optimizer=optimizer, loss_fn=loss_fn):
                with tf.GradientTape() as tape:
                    logits = model(xb, training=True)
                    loss = loss_fn(yb, logits)
                    scaled = loss * comm.loss_scale
                grads = comm.average_gradients(tape.gradient(scaled, model.trainable_variables))
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
                accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), yb), tf.float32))
                return loss, accuracy

            step = comm.compile_step(step)
            comm.broadcast(model, optimizer)
            rec = TrialRecord(spec=spec.as_dict(), trial=trial, workers=comm.size, rank=comm.rank,
                              threads=tf.config.threading.get_intra_op_parallelism_threads())
            global_batch = spec.per_worker_batch * comm.size
            n, b = len(x), spec.per_worker_batch
            for i in range(spec.warmup_steps + spec.steps):
                t0 = time.perf_counter()  # the whole iteration counts: batching and the LR update too
                lo = (i * b) % max(1, n - b + 1)
                xb, yb = tf.constant(x[lo:lo + b]), tf.constant(y[lo:lo + b])
                lr = spec.learning_rate(global_batch, i)
                optimizer.learning_rate.assign(lr)
                loss, acc = step(xb, yb)
                loss, acc = float(loss), float(acc)  # waits for the step (and its allreduce) to finish
                rec.step_seconds.append(time.perf_counter() - t0)
                rec.losses.append(loss)
                rec.accuracies.append(acc)
                rec.learning_rates.append(lr)
                done += 1
                if comm.rank == 0 and show_progress and (done % 5 == 0 or done == total_steps):
                    launch.progress(done, total_steps, desc=f"{spec.model} ×{comm.size} trial {trial + 1}",
                                    loss=loss)
            tail = max(1, min(5, spec.steps))
            rec.final_loss, rec.final_accuracy = comm.mean([float(np.mean(rec.losses[-tail:])),
                                                            float(np.mean(rec.accuracies[-tail:]))])
            records.append(rec)
    return records


def allreduce_timings(sizes_bytes=(4_096, 65_536, 1_048_576, 4_194_304), repeats: int = 5) -> list[dict]:
    """Time Horovod allreduces of several sizes on this job (median of ``repeats``): the data the
    α–β model is calibrated from (:func:`labkit.scaling.model.fit_alpha_beta`)."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    rows = []
    for nbytes in sizes_bytes:
        t = tf.ones([max(1, nbytes // 4)], tf.float32)
        hvd.allreduce(t, op=hvd.Sum, name=f"labkit.calib.warm.{nbytes}")
        times = []
        for r in range(repeats):
            t0 = time.perf_counter()
            hvd.allreduce(t, op=hvd.Sum, name=f"labkit.calib.{nbytes}.{r}").numpy()
            times.append(time.perf_counter() - t0)
        rows.append({"workers": hvd.size(), "bytes": int(nbytes), "seconds": float(np.median(times))})
    return rows


def worker_job(specs: list[RunSpec], trials: int, calibrate: bool = False, show_progress: bool = True) -> dict:
    """The function each Horovod worker (or the single baseline process) runs for the harness."""
    comm = _Comm.detect()
    records = train_trials(specs, trials, comm, show_progress)
    calib = allreduce_timings() if calibrate and comm.horovod and comm.size > 1 else []
    return {"rank": comm.rank, "records": records, "allreduce": calib, "pid": os.getpid()}
