"""The scaling-experiment harness: a grid of runs, executed under Horovod, into one tidy table.

    exp = Experiment(workers=[1, 2], per_worker_batch=[32], models=["cnn"], steps=30, trials=2)
    results = run_experiment(exp)          # ScalingResults
    results.runs                           # pandas, one row per run (config × trial)
    results.save("build/scaling")          # runs.csv, curves.csv, results.json (+ environment)

How a grid is executed:

- One Horovod job per worker count (and per round): every model, batch and trial of that count
  runs inside the same job, so each costs one ``horovodrun`` start and one TensorFlow import.
- ``trials`` repeat each configuration inside a job; ``rounds`` repeat the whole sequence of
  jobs, interleaving configurations so that a burst of load elsewhere hits all of them alike.
- The first ``warmup_steps`` of every run (graph tracing, caches) are left out of throughput
  and step times, but kept in the loss curves.
- Baselines (:mod:`labkit.scaling.baselines`): next to the workers, a *single plain process*
  with all the cores the workers use and the same global batch (``baseline=True``).
- ``timeline_dir`` turns Horovod's timeline on for the multi-worker jobs (it costs a little
  time per step; leave it off for the most precise throughput).
- ``mirrored=True`` adds the same training under ``tf.distribute.MultiWorkerMirroredStrategy``
  (:mod:`labkit.scaling.mirrored`) at the same worker counts.

Strong scaling keeps the global batch fixed (``global_batch=[64]``: per-worker batch = 64 / p);
weak scaling keeps the per-worker batch fixed (``per_worker_batch=[32]``).
"""
from __future__ import annotations

import json
import os
import platform
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from labkit import launch
from labkit.doctor import usable_cores
from labkit.scaling.workload import RunSpec, worker_job
from labkit.threads import ThreadBudget

#: The columns of ``ScalingResults.runs``, in order (the table's schema).
RUN_COLUMNS = [
    "run_id", "mode", "model", "scaling", "workers", "threads_per_worker", "cores_used",
    "per_worker_batch", "global_batch", "round", "trial", "steps", "warmup_steps",
    "throughput", "step_time_mean", "step_time_p50", "step_time_p95",
    "final_loss", "final_accuracy", "target_accuracy", "time_to_target_s", "learning_rate",
    "wall_seconds",
]
#: The columns of ``ScalingResults.curves``: one row per training step of every run.
CURVE_COLUMNS = ["run_id", "mode", "model", "workers", "global_batch", "trial", "step", "epoch",
                 "wall_time_s", "loss", "accuracy", "learning_rate", "step_seconds"]


@dataclass
class Experiment:
    """A grid of runs: workers × per-worker batch (or global batch) × model."""

    workers: list[int] = field(default_factory=lambda: [1, 2])
    models: list[str] = field(default_factory=lambda: ["cnn"])
    per_worker_batch: list[int] = field(default_factory=lambda: [32])  # weak scaling
    global_batch: list[int] | None = None     # strong scaling: set this instead
    threads_per_worker: int = 1
    pin_cores: bool = False                    # pin each Horovod worker to its own cores
    steps: int = 30
    warmup_steps: int = 5
    trials: int = 1
    rounds: int = 1
    baseline: bool = True                      # single process with all the workers' cores
    mirrored: bool = False                     # also run MultiWorkerMirroredStrategy
    target_accuracy: float | None = None
    base_lr: float = 0.05
    base_batch: int = 32
    lr_scaling: str = "linear"
    lr_warmup_steps: int = 5
    dataset_size: int = 2048
    image_size: int = 32
    calibrate: bool = True                     # time allreduces of several sizes (for the model)
    env: dict = field(default_factory=dict)    # e.g. {"HOROVOD_CYCLE_TIME": "1"}
    timeline_dir: str | None = None            # write Horovod timelines of multi-worker jobs here

    @property
    def scaling(self) -> str:
        return "strong" if self.global_batch else "weak"

    def specs(self, workers: int) -> list[RunSpec]:
        """The runs one job of ``workers`` workers executes."""
        out = []
        for model in self.models:
            if self.global_batch:
                batches = []
                for g in self.global_batch:
                    if g % workers:
                        raise ValueError(f"global batch {g} does not split evenly over {workers} workers")
                    batches.append(g // workers)
            else:
                batches = list(self.per_worker_batch)
            for b in batches:
                out.append(RunSpec(model=model, per_worker_batch=b, steps=self.steps,
                                   warmup_steps=self.warmup_steps, base_lr=self.base_lr,
                                   base_batch=self.base_batch, lr_scaling=self.lr_scaling,
                                   lr_warmup_steps=self.lr_warmup_steps, target_accuracy=self.target_accuracy,
                                   image_size=self.image_size, dataset_size=self.dataset_size,
                                   scaling=self.scaling))
        return out


@dataclass
class ScalingResults:
    """An experiment's results: ``runs`` (one row per run), ``curves`` (one row per step),
    ``allreduce`` (timed allreduces per size, for the analytic model) and ``environment``."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    allreduce: pd.DataFrame
    environment: dict
    experiment: dict = field(default_factory=dict)
    timelines: dict = field(default_factory=dict)  # "2 workers, round 1" -> timeline file

    def save(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write ``runs.csv``, ``curves.csv``, ``allreduce.csv`` and ``results.json`` (everything,
        environment metadata included) into ``folder``; return the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {name: folder / f"{name}.csv" for name in ("runs", "curves", "allreduce")}
        self.runs.to_csv(paths["runs"], index=False)
        self.curves.to_csv(paths["curves"], index=False)
        self.allreduce.to_csv(paths["allreduce"], index=False)
        paths["json"] = folder / "results.json"
        paths["json"].write_text(json.dumps({
            "environment": self.environment, "experiment": self.experiment,
            "timelines": self.timelines, "runs": json.loads(self.runs.to_json(orient="records")),
            "allreduce": json.loads(self.allreduce.to_json(orient="records")),
        }, indent=2))
        return paths

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "ScalingResults":
        folder = Path(folder)
        meta = json.loads((folder / "results.json").read_text())
        return cls(runs=pd.read_csv(folder / "runs.csv"), curves=pd.read_csv(folder / "curves.csv"),
                   allreduce=pd.read_csv(folder / "allreduce.csv"), environment=meta["environment"],
                   experiment=meta.get("experiment", {}), timelines=meta.get("timelines", {}))

    def __add__(self, other: "ScalingResults") -> "ScalingResults":
        return ScalingResults(pd.concat([self.runs, other.runs], ignore_index=True),
                              pd.concat([self.curves, other.curves], ignore_index=True),
                              pd.concat([self.allreduce, other.allreduce], ignore_index=True),
                              self.environment, self.experiment, {**self.timelines, **other.timelines})


def environment(threads: dict | None = None, env: dict | None = None) -> dict:
    """What a results file records about the machine: cores, versions, threads, Horovod knobs, load."""
    from importlib import metadata

    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    knobs = {k: v for k, v in {**os.environ, **(env or {})}.items()
             if k.startswith(("HOROVOD_", "OMP_", "TF_NUM_", "KMP_"))}
    return {"host": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "cores": usable_cores(), "cpu_count": os.cpu_count(),
            "tensorflow": version("tensorflow-cpu") or version("tensorflow"), "keras": version("keras"),
            "horovod": version("horovod"), "thread_settings": threads or {}, "env": knobs,
            "load_average_1m": os.getloadavg()[0], "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# --------------------------------------------------------------------------------------------
# From worker records to tidy rows
# --------------------------------------------------------------------------------------------
def _rows(records, mode: str, threads: int, rnd: int, first_id: int) -> tuple[list[dict], list[dict]]:
    runs, curves = [], []
    for k, rec in enumerate(records):
        spec = rec.spec
        workers = rec.workers
        global_batch = spec["per_worker_batch"] * workers
        timed = np.asarray(rec.step_seconds[spec["warmup_steps"]:])
        run_id = first_id + k
        wall = np.cumsum(rec.step_seconds)
        ttt = float("nan")
        if spec["target_accuracy"] is not None:
            smooth = pd.Series(rec.accuracies).rolling(5, min_periods=1).mean().to_numpy()
            hit = np.nonzero(smooth >= spec["target_accuracy"])[0]
            ttt = float(wall[hit[0]]) if len(hit) else float("nan")
        runs.append({
            "run_id": run_id, "mode": mode, "model": spec["model"], "scaling": spec["scaling"],
            "workers": workers, "threads_per_worker": threads, "cores_used": workers * threads,
            "per_worker_batch": spec["per_worker_batch"], "global_batch": global_batch, "round": rnd,
            "trial": rec.trial, "steps": spec["steps"], "warmup_steps": spec["warmup_steps"],
            "throughput": global_batch / timed.mean() if len(timed) else float("nan"),
            "step_time_mean": float(timed.mean()) if len(timed) else float("nan"),
            "step_time_p50": float(np.percentile(timed, 50)) if len(timed) else float("nan"),
            "step_time_p95": float(np.percentile(timed, 95)) if len(timed) else float("nan"),
            "final_loss": rec.final_loss, "final_accuracy": rec.final_accuracy,
            "target_accuracy": spec["target_accuracy"], "time_to_target_s": ttt,
            "learning_rate": rec.learning_rates[-1] if rec.learning_rates else float("nan"),
            "wall_seconds": float(wall[-1]) if len(wall) else 0.0,
        })
        for i, (s, loss, acc, lr) in enumerate(zip(rec.step_seconds, rec.losses, rec.accuracies, rec.learning_rates)):
            curves.append({"run_id": run_id, "mode": mode, "model": spec["model"], "workers": workers,
                           "global_batch": global_batch, "trial": rec.trial, "step": i,
                           "epoch": (i + 1) * global_batch / spec["dataset_size"], "wall_time_s": float(wall[i]),
                           "loss": loss, "accuracy": acc, "learning_rate": lr, "step_seconds": s})
    return runs, curves


def _job_horovod(exp: Experiment, workers: int, timeout: float, echo: bool, timeline=None):
    threads = ThreadBudget(exp.threads_per_worker, 1)
    out = launch.run(worker_job, exp.specs(workers), exp.trials, exp.calibrate and workers > 1, echo,
                     np=workers, threads=threads, timeout=timeout, env=exp.env, echo=echo, timeline=timeline,
                     pin_cores=exp.pin_cores)
    return out[0]


def _job_single_process(exp: Experiment, workers: int, timeout: float, echo: bool):
    """The sceptic's baseline: one plain process, ``workers × threads`` threads, the same global batch."""
    cores = workers * exp.threads_per_worker
    specs = [replace(s, per_worker_batch=s.per_worker_batch * workers) for s in exp.specs(workers)]
    out = launch.run_local(worker_job, specs, exp.trials, False, echo, np=1,
                           threads=ThreadBudget(cores, 1), timeout=timeout, echo=echo)
    return out[0], cores


def run_experiment(exp: Experiment, timeout: float = 900, echo: bool = True) -> ScalingResults:
    """Run every configuration of ``exp`` (see the module docstring); return the tidy results.

    ``timeout`` applies to each job (one worker count in one round). Progress streams from rank 0.
    """
    cores = usable_cores()
    if max(exp.workers) * exp.threads_per_worker > cores:
        print(f"labkit.scaling: note: {max(exp.workers)} workers × {exp.threads_per_worker} threads "
              f"oversubscribe this machine's {cores} cores; expect poor scaling.")
    runs, curves, calib, timelines = [], [], [], {}
    for rnd in range(exp.rounds):
        order = list(exp.workers) if rnd % 2 == 0 else list(reversed(exp.workers))  # interleave
        for workers in order:
            if echo:
                print(f"— round {rnd + 1}/{exp.rounds}: Horovod, {workers} worker(s) × {exp.threads_per_worker} thread(s)")
            timeline = None
            if exp.timeline_dir and workers > 1:
                timeline = str(Path(exp.timeline_dir, f"timeline_{workers}w_round{rnd + 1}.json").resolve())
                timelines[f"{workers} workers, round {rnd + 1}"] = timeline
            job = _job_horovod(exp, workers, timeout, echo, timeline)
            r, c = _rows(job["records"], "horovod", exp.threads_per_worker, rnd, len(runs))
            runs += r
            curves += c
            calib += job["allreduce"]
            if exp.baseline and workers * exp.threads_per_worker > exp.threads_per_worker:
                if echo:
                    print(f"— round {rnd + 1}/{exp.rounds}: single process × {workers * exp.threads_per_worker} threads (baseline)")
                job, used = _job_single_process(exp, workers, timeout, echo)
                r, c = _rows(job["records"], "single-process", used, rnd, len(runs))
                runs += r
                curves += c
            if exp.mirrored and workers > 1:
                from labkit.scaling import mirrored

                if echo:
                    print(f"— round {rnd + 1}/{exp.rounds}: MultiWorkerMirroredStrategy, {workers} workers")
                records = mirrored.run_mirrored(exp.specs(workers), exp.trials, workers=workers,
                                                threads=exp.threads_per_worker, timeout=timeout, echo=echo)
                r, c = _rows(records, "mirrored", exp.threads_per_worker, rnd, len(runs))
                runs += r
                curves += c
    return ScalingResults(
        runs=pd.DataFrame(runs, columns=RUN_COLUMNS), curves=pd.DataFrame(curves, columns=CURVE_COLUMNS),
        allreduce=pd.DataFrame(calib, columns=["workers", "bytes", "seconds"]),
        environment=environment({"threads_per_worker": exp.threads_per_worker, "inter_op": 1,
                                 "pin_cores": exp.pin_cores}, exp.env),
        experiment=asdict(exp), timelines=timelines)
