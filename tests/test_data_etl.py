"""The ETL: the raw logs are dirty in known ways, and the clean table is clean and learnable."""
import json

import numpy as np
import pandas as pd
import pytest

from labkit import data
from labkit.data import etl


def test_raw_files_have_the_dirt_the_lesson_talks_about(tmp_path):
    paths = data.write_raw_shop(tmp_path, sessions=3000, users=300, seed=1)
    events = pd.read_csv(paths["events"], dtype=str, keep_default_na=False)
    assert events["session_id"].duplicated().sum() > 0
    assert (events["seconds"] == "NA").sum() > 0 and (events["cart_value"] == "").sum() > 0
    broken = 0
    for line in paths["users"].read_text().splitlines():
        try:
            json.loads(line)
        except json.JSONDecodeError:
            broken += 1
    assert broken > 0


def test_etl_cleans_joins_and_writes_parquet(tmp_path):
    table, stages, counts = data.run_etl(tmp_path, sessions=4000, users=400, seed=2)
    assert list(stages["stage"]) == ["generate raw", "extract", "transform", "load (parquet)"]
    assert counts["duplicates"] > 0 and counts["unrepairable"] > 0 and counts["broken_json_lines"] > 0
    assert counts["clean_rows"] == len(table) == counts["raw_rows"] - counts["duplicates"] - counts["unrepairable"] - counts["unknown_user"]
    assert table["session_id"].is_unique and not table[etl.FEATURES].isna().any().any()
    assert (table["cart_value"] >= 0).all()
    back = pd.read_parquet(tmp_path / "sessions.parquet")
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    assert (tmp_path / "sessions.parquet").stat().st_size < (tmp_path / "events.csv").stat().st_size


def test_partitioned_load(tmp_path):
    table, _, _ = data.run_etl(tmp_path, sessions=1000, users=100)
    etl.load(table, tmp_path / "by_country", partition_by="country")
    assert {p.name for p in (tmp_path / "by_country").iterdir()} == {f"country={c}" for c in table["country"].unique()}


def test_purchase_label_is_learnable(tmp_path):
    from labkit import linear

    table, _, _ = data.run_etl(tmp_path, sessions=6000, users=600)
    x = table[etl.FEATURES].to_numpy("float64")
    x = (x - x.mean(0)) / x.std(0)
    y = table["purchased"].to_numpy()
    w, _ = linear.train((x, y), method="gd", lr=1.0, epochs=200)
    assert linear.accuracy(w, x, y) > max(y.mean(), 1 - y.mean()) + 0.08


def test_logistic_data_knows_its_answer():
    x, y, w = data.logistic_data(n=2000, features=10, informative=3, seed=4)
    assert x.shape == (2000, 10) and set(np.unique(y)) == {0, 1}
    assert np.count_nonzero(w[:-1]) == 3 and np.all(w[3:-1] == 0)
    with pytest.raises(ValueError):
        data.logistic_data(features=3, informative=4)
