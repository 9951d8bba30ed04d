"""labkit.scaling's harness with real processes: the table schema, baselines, MirroredStrategy,
the timeline, the calibration data and the CLI. One small experiment is run once and shared."""
import argparse
import json

import numpy as np
import pandas as pd
import pytest

from labkit import scaling
from labkit.scaling import cli, harness, model, timeline
from labkit.scaling.baselines import summarize, with_speedups

STEPS, WARMUP, TRIALS = 6, 2, 2


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("scaling")
    exp = scaling.Experiment(workers=[1, 2], models=["cnn"], per_worker_batch=[16], steps=STEPS,
                             warmup_steps=WARMUP, trials=TRIALS, baseline=True, mirrored=True,
                             target_accuracy=0.0, timeline_dir=str(out), dataset_size=512)
    res = scaling.run_experiment(exp, timeout=240, echo=False)
    res.folder = out
    return res


@pytest.mark.slow
def test_runs_table_has_one_row_per_run_and_the_schema(results):
    runs = results.runs
    assert list(runs.columns) == harness.RUN_COLUMNS
    # horovod ×1, horovod ×2, single process with 2 cores, mirrored ×2 — each TRIALS times
    assert len(runs) == 4 * TRIALS
    assert runs["run_id"].is_unique
    counts = runs.groupby(["mode", "workers"]).size().to_dict()
    assert counts == {("horovod", 1): TRIALS, ("horovod", 2): TRIALS, ("single-process", 1): TRIALS,
                      ("mirrored", 2): TRIALS}
    assert (runs["global_batch"] == runs["per_worker_batch"] * runs["workers"]).all()
    assert (runs["throughput"] > 0).all() and runs["throughput"].notna().all()
    assert (runs["step_time_p50"] <= runs["step_time_p95"]).all()
    assert runs["time_to_target_s"].notna().all()  # target 0.0 is reached at once
    base = runs[runs["mode"] == "single-process"].iloc[0]
    assert (base["threads_per_worker"], base["cores_used"], base["global_batch"]) == (2, 2, 32)


@pytest.mark.slow
def test_warmup_steps_are_left_out_of_the_timings(results):
    runs, curves = results.runs, results.curves
    assert list(curves.columns) == harness.CURVE_COLUMNS
    for row in runs.itertuples():
        steps = curves[curves["run_id"] == row.run_id]
        assert len(steps) == STEPS + WARMUP
        timed = steps[steps["step"] >= WARMUP]["step_seconds"]
        assert row.step_time_mean == pytest.approx(timed.mean())
        assert row.throughput == pytest.approx(row.global_batch / timed.mean())


@pytest.mark.slow
def test_horovod_and_mirrored_strategy_train_the_same_model(results):
    """Same seed, shards, averaging and learning rate: the loss curves must agree step by step."""
    c = results.curves[(results.curves["workers"] == 2) & (results.curves["trial"] == 0)]
    hv = c[c["mode"] == "horovod"]["loss"].to_numpy()
    mw = c[c["mode"] == "mirrored"]["loss"].to_numpy()
    assert len(hv) == STEPS + WARMUP
    np.testing.assert_allclose(hv, mw, rtol=1e-3)


@pytest.mark.slow
def test_summary_speedups_and_baseline(results):
    s = summarize(results.runs).set_index(["mode", "workers"])
    assert s.loc[("horovod", 1), "speedup"] == pytest.approx(1.0)
    assert s.loc[("horovod", 2), "ideal_speedup"] == 2
    two = s.loc[("horovod", 2)]
    assert two["efficiency"] == pytest.approx(two["speedup"] / 2)
    assert two["baseline_throughput"] == pytest.approx(s.loc[("single-process", 1), "throughput"])
    assert two["vs_baseline"] == pytest.approx(two["throughput"] / two["baseline_throughput"])


@pytest.mark.slow
def test_results_save_and_load_with_environment(results, tmp_path):
    paths = results.save(tmp_path)
    meta = json.loads(paths["json"].read_text())
    env = meta["environment"]
    for key in ("cores", "tensorflow", "keras", "horovod", "python", "thread_settings", "env", "load_average_1m"):
        assert key in env
    assert len(meta["runs"]) == len(results.runs)
    back = scaling.ScalingResults.load(tmp_path)
    pd.testing.assert_frame_equal(back.runs, results.runs, check_dtype=False)


@pytest.mark.slow
def test_timeline_splits_steps_into_compute_and_allreduce(results):
    (path,) = results.timelines.values()
    steps = timeline.step_breakdown(timeline.read_timeline(path))
    assert len(steps) >= TRIALS * (STEPS + WARMUP)  # one allreduce per training step
    parts = steps[["negotiation_s", "waiting_s", "allreduce_s"]]
    assert (parts >= 0).all().all() and (steps["compute_s"].iloc[1:] > 0).all()
    summary = timeline.summarize_steps(steps)
    assert summary["compute_share"] + summary["negotiation_share"] + summary["waiting_share"] + \
        summary["allreduce_share"] == pytest.approx(1.0)


@pytest.mark.slow
def test_allreduce_timings_calibrate_the_model(results):
    a = results.allreduce
    assert set(a["workers"]) == {2} and a["bytes"].is_monotonic_increasing
    net = model.fit_alpha_beta(a)
    assert net.bandwidth > 0 and net.alpha >= 0


def test_strong_scaling_splits_the_global_batch():
    exp = scaling.Experiment(workers=[1, 2, 4], global_batch=[64], models=["cnn", "mlp"])
    assert exp.scaling == "strong"
    assert [s.per_worker_batch for s in exp.specs(4)] == [16, 16]
    assert {s.model for s in exp.specs(2)} == {"cnn", "mlp"}
    with pytest.raises(ValueError, match="does not split evenly"):
        scaling.Experiment(global_batch=[10]).specs(3)


def test_with_speedups_on_a_known_table():
    t = pd.DataFrame([
        dict(mode="horovod", model="m", scaling="weak", workers=1, threads_per_worker=1, cores_used=1,
             per_worker_batch=8, global_batch=8, throughput=100.0),
        dict(mode="horovod", model="m", scaling="weak", workers=4, threads_per_worker=1, cores_used=4,
             per_worker_batch=8, global_batch=32, throughput=300.0),
        dict(mode="single-process", model="m", scaling="weak", workers=1, threads_per_worker=4, cores_used=4,
             per_worker_batch=32, global_batch=32, throughput=350.0),
    ])
    s = with_speedups(t).set_index(["mode", "workers"])
    assert s.loc[("horovod", 4), "speedup"] == 3.0 and s.loc[("horovod", 4), "efficiency"] == 0.75
    assert s.loc[("horovod", 4), "vs_baseline"] == pytest.approx(300 / 350)
    assert not s.loc[("horovod", 4), "beats_baseline"]
    assert s.loc[("single-process", 1), "speedup"] == 3.5  # the sceptic's 4 threads vs one worker
    with pytest.raises(ValueError):
        with_speedups(t[t["mode"] == "single-process"])


def test_cli_registers_scale_and_prints_the_published_comparison(capsys):
    parser = argparse.ArgumentParser(prog="labkit")
    cli.register(parser.add_subparsers(dest="command"))
    assert "runs.csv" in parser._subparsers._group_actions[0].choices["scale"].description
    args = parser.parse_args(["scale", "--published", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {r["model"] for r in out["table"]} == {"Inception V3", "ResNet-101", "VGG-16"}
    assert out["fit"]["max_error"] <= 0.03
    args = parser.parse_args(["scale", "--workers", "1", "2", "--global-batch", "64", "--steps", "3"])
    assert args.global_batch == [64] and args.workers == [1, 2]


@pytest.mark.slow
def test_cli_scale_runs_a_job_and_writes_its_files(tmp_path, capsys):
    """``labkit scale`` end to end, as small as it gets: one Horovod worker, two timed steps."""
    parser = argparse.ArgumentParser(prog="labkit")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["scale", "--workers", "1", "--no-baseline", "--steps", "2", "--warmup", "1",
                              "--out", str(tmp_path), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["out"] == str(tmp_path) and out["summary"][0]["workers"] == 1
    for name in ("runs.csv", "summary.csv", "curves.csv", "allreduce.csv", "results.json"):
        assert (tmp_path / name).exists(), name
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs.columns) == harness.RUN_COLUMNS and len(runs) == 1


@pytest.mark.slow
def test_every_plot_draws_from_the_results_and_the_model(results):
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    from labkit.scaling import plots

    summary = summarize(results.runs)
    (path,) = results.timelines.values()
    fit = model.fit_published()
    pred = model.predict(model.published_workloads(), fit.network, fit.overheads)
    figures = [plots.plot_scaling(summary), plots.plot_vs_baseline(summary),
               plots.plot_convergence(results.curves, model="cnn"),
               plots.plot_timeline_steps(timeline.step_breakdown(timeline.read_timeline(path))),
               plots.plot_model_efficiency(pred, model.PUBLISHED), plots.plot_published_comparison(fit.table),
               plots.plot_step_anatomy(pred, 512)]
    for fig in figures:
        assert isinstance(fig, plt.Figure)
        assert fig.axes[0].get_ylabel(), "a figure needs a labelled y axis"
        assert all(ax.get_title() for ax in fig.axes), "every panel needs a title"
        plt.close(fig)
    # the scaling figure has one row of three panels per model, and its baseline in the legend
    assert len(figures[0].axes) == 3
    assert any("baseline" in t.get_text() for t in figures[0].axes[0].get_legend().get_texts())
