"""Every exercise of labs 10–14: its check fails on a wrong answer with a helpful message, and passes
on the right one. The tests run the notebooks' own raw-cell tests through labkit.check, on
namespaces that hold what the notebook would have computed at that point."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labkit import autodiff as ad
from labkit import check, hardware

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _lr_history(lr, final):
    return pd.DataFrame({"lr": [lr, lr], "loss": [0.69, final]})


def _own_f(x, y):
    return (x * y).tanh() + x ** 2 / y


CASES = {
    # notebook, question: (context, right answers, wrong answers, words the failure must contain)
    ("13_autodiff", "ad1"): ({"np": np, "ad": ad}, {"sigmoid_slope_at_0": 0.25, "zero_or_one": "relu"},
                             {"sigmoid_slope_at_0": 0.5, "zero_or_one": "relu"}, "σ'(0) = 0.5 × (1 − 0.5)"),
    ("13_autodiff", "ad2"): ({"np": np}, {"dfdx": 36, "dfdy": 24}, {"dfdx": 36, "dfdy": 18}, "both paths added"),
    ("13_autodiff", "ad3"): ({"np": np},
                             {"xent": float(np.log(np.exp([2, 1, 0]).sum()) - 2),
                              "xent_grad": np.exp([2, 1, 0]) / np.exp([2, 1, 0]).sum() - [1, 0, 0]},
                             {"xent": float(np.log(np.exp([2, 1, 0]).sum()) - 2),
                              "xent_grad": np.exp([2, 1, 0]) / np.exp([2, 1, 0]).sum()}, "one-hot"),
    ("13_autodiff", "ad4"): ({"np": np, "ad": ad}, {"my_f": _own_f}, {"my_f": lambda x, y: x * y + x - y},
                             "non-linear"),
    ("12_linear_models", "lin1"): ({"ROWS": 1000}, {"steps_gd": 1, "steps_sgd": 1000, "steps_minibatch_64": 16},
                                   {"steps_gd": 1, "steps_sgd": 1000, "steps_minibatch_64": 15}, "⌈n / B⌉"),
    ("12_linear_models", "lin2"): ({"lr_runs": [_lr_history(0.003, 0.45), _lr_history(0.03, 0.3),
                                                _lr_history(0.3, 0.29), _lr_history(30.0, 3.2)]},
                                   {"good_learning_rates": [0.3, 0.03]}, {"good_learning_rates": [0.03, 0.3, 30.0]},
                                   "final loss"),
    ("12_linear_models", "lin3"): ({"np": np, "ws_true": np.array([1.0, 0, -2.0, 0, 0, 0.3])},
                                   {"l1_selected": [2, 0]}, {"l1_selected": [0, 1, 2]}, "informative"),
    ("12_linear_models", "lin4"): ({"timings": pd.DataFrame({"workers": [1, 2], "seconds": [9.0, 6.0]}),
                                    "table": pd.DataFrame({"lr": [1.0, 0.3], "l2": [0.003, 0.0]})},
                                   {"speedup": 1.5, "best_lr": 1.0, "best_l2": 0.003},
                                   {"speedup": 6.0 / 9.0, "best_lr": 1.0, "best_l2": 0.003}, "seconds with 1 worker"),
    ("10_data_pipelines", "pipe1"): ({"counts": {"raw_rows": 1000, "clean_rows": 900},
                                      "storage": pd.DataFrame({"MB": [3.0, 1.2]})},
                                     {"rows_lost": 100, "size_ratio": 2.5}, {"rows_lost": 100, "size_ratio": 0.4},
                                     "raw MB / Parquet MB"),
    ("10_data_pipelines", "pipe2"): ({"pipes": pd.DataFrame({"variant": ["map(parse), 1 row at a time", "batch, then map(parse)"],
                                                             "rows_per_s": [1000.0, 40000.0]}),
                                      "steps": pd.DataFrame({"ms_per_step": [20.0, 16.0]})},
                                     {"batching_speedup": 40.0, "prefetch_saving_ms": 4.0},
                                     {"batching_speedup": 40.0, "prefetch_saving_ms": -4.0}, "subtract"),
    ("10_data_pipelines", "pipe3"): ({"hierarchy": pd.DataFrame({"source": ["L1d", "RAM", "page cache (x)", "disk (y)"],
                                                                 "bytes_per_s": [1e11, 1e10, 2e9, 5e8]})},
                                     {"fastest_over_page_cache": 50.0, "fastest_over_disk": 200.0},
                                     {"fastest_over_page_cache": 50.0, "fastest_over_disk": 20.0}, "disk row"),
    ("11_spark_ml", "spark1"): ({"pandas_table": pd.DataFrame({"device": ["mobile", "desktop", "mobile"],
                                                               "purchased": [1, 1, 1]})},
                                {"purchases_by_device": {"mobile": 2, "desktop": 1}},
                                {"purchases_by_device": {"mobile": 3, "desktop": 3}}, "per device"),
    ("11_spark_ml", "spark2"): ({"grid": [{}] * 4, "FOLDS": 3}, {"fits_in_cv": 13}, {"fits_in_cv": 12}, "refits"),
    ("11_spark_ml", "spark3"): ({"timings": pd.DataFrame({"job (s)": [np.nan, 6.0, 4.0, 0.2]})},
                                {"spark_speedup": 1.5, "pandas_faster": True},
                                {"spark_speedup": 1.5, "pandas_faster": False}, "pandas row"),
    ("14_hardware", "hw1"): ({"sweep": pd.DataFrame({"flop_per_s": [1e9, 5e10]})},
                             {"flops_512": 2 * 512 ** 3, "ms_512_at_best": 1e3 * 2 * 512 ** 3 / 5e10},
                             {"flops_512": 512 ** 3, "ms_512_at_best": 1.0}, "2·m·k·n"),
    ("14_hardware", "hw2"): ({"ridge": 5.0}, {"intensity_rnn4": hardware.arithmetic_intensity(4, 1024, 1024),
                                              "bound_rnn4": "memory"},
                             {"intensity_rnn4": hardware.arithmetic_intensity(4, 1024, 1024), "bound_rnn4": "compute"},
                             "ridge point"),
    ("14_hardware", "hw3"): ({}, {"overflows": "float16", "bf16_epsilon": 2.0 ** -7},
                             {"overflows": "bfloat16", "bf16_epsilon": 2.0 ** -7}, "65 504"),
}


@pytest.mark.parametrize("notebook,question", list(CASES), ids=[q for _, q in CASES])
def test_exercise_check_fails_helpfully_then_passes(notebook, question, capsys):
    context, right, wrong, hint = CASES[(notebook, question)]
    path = NOTEBOOKS / f"{notebook}.ipynb"
    placeholders = {name: None for name in right}
    assert not check(question, notebook=path, namespace={**context, **placeholders})
    assert not check(question, notebook=path, namespace={**context, **wrong})
    out = capsys.readouterr().out
    assert f"✗ {question}.1" in out and hint in out, out
    assert check(question, notebook=path, namespace={**context, **right})
    assert "1 of 1 visible tests passed" in capsys.readouterr().out


def test_every_exercise_in_labs_10_to_14_is_covered():
    import re

    found = set()
    for nb in ["10_data_pipelines", "11_spark_ml", "12_linear_models", "13_autodiff", "14_hardware"]:
        text = (NOTEBOOKS / f"{nb}.ipynb").read_text()
        ids = set(re.findall(r'# TEST (\w+) \(', text))
        assert len(ids) >= 3, f"{nb} has fewer than 3 exercises"
        assert all(f'check(\\"{q}\\")' in text for q in ids), f"{nb}: every exercise needs a check() cell"
        found |= {(nb, q) for q in ids}
    assert found == set(CASES)
