"""Extract, transform, load: raw shop logs (CSV and JSON lines) into a clean Parquet table.

The raw data is what a web shop's logs look like, generated here (no downloads) with the usual
dirt: duplicated rows, blanks, ``"NA"``, negative amounts, unparseable timestamps and broken JSON
lines. Whether a session ends in a purchase depends on its features through a logistic model,
so the clean table is a real classification problem (labs 10, 11 and 12 use it).

- :func:`write_raw_shop` -- ``events.csv`` (one row per browsing session) and ``users.jsonl``.
- :func:`extract` -- read both raw files as text-typed tables, counting the JSON lines that
  don't parse.
- :func:`transform` -- de-duplicate, parse types, drop what can't be repaired, fill what can,
  join the users, derive model features.
- :func:`load` -- write Parquet with pyarrow (optionally partitioned by a column).
- :func:`run_etl` -- all three, with a tidy table of rows and seconds per stage.
- :func:`spark_extract`, :func:`spark_transform` -- the same extract and rules as Spark DataFrame
  code (lab 11): lazy transformations that a Spark action runs, on one machine or a cluster.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

COUNTRIES = ["DE", "FR", "NL", "IT", "ES", "PL", "SE"]
DEVICES = ["mobile", "desktop", "tablet"]
#: Numeric model features :func:`transform` derives (the label is ``purchased``).
FEATURES = ["pages", "log_seconds", "cart_value", "hour", "is_mobile", "is_pro", "age"]
#: The true logistic model behind ``purchased`` (on standardised inputs), for checking fits.
_TRUE = {"pages": 1.0, "log_seconds": 0.8, "cart_value": 1.2, "is_mobile": -0.6, "is_pro": 0.9,
         "age": 0.2, "bias": -0.7}


def write_raw_shop(folder, sessions: int = 20_000, users: int = 2_000, dirty: float = 0.02,
                   seed: int = 0) -> dict[str, Path]:
    """Write ``events.csv`` and ``users.jsonl`` into ``folder``; returns their paths.

    ``dirty`` is the fraction of rows given each kind of defect (duplicates, blanks, bad numbers,
    bad timestamps, broken JSON).
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    uid = np.arange(1, users + 1)
    age = rng.integers(18, 75, users)
    plan = np.where(rng.random(users) < 0.25, "pro", "free")
    country = rng.choice(COUNTRIES, users)
    signup = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 600, users), unit="D")
    lines = []
    for i in range(users):
        record = {"user_id": int(uid[i]), "country": str(country[i]), "plan": str(plan[i]),
                  "signup": signup[i].strftime("%Y-%m-%d")}
        if rng.random() >= dirty:  # some users never told us their age
            record["age"] = int(age[i])
        line = json.dumps(record)
        if rng.random() < dirty / 2:
            line = line[: len(line) // 2]  # a truncated write: broken JSON
        lines.append(line)
    (folder / "users.jsonl").write_text("\n".join(lines) + "\n")

    user = rng.integers(1, users + 1, sessions)
    device = rng.choice(DEVICES, sessions, p=[0.55, 0.35, 0.10])
    pages = rng.poisson(5, sessions) + 1
    seconds = np.round(rng.lognormal(4.0 + 0.08 * pages, 0.6), 1)
    cart = np.round(np.maximum(rng.normal(40 + 6 * pages, 25), 0), 2)
    start = pd.Timestamp("2024-05-01") + pd.to_timedelta(rng.integers(0, 30 * 86400, sessions), unit="s")
    is_pro = (plan[user - 1] == "pro").astype(float)
    z = (_TRUE["pages"] * (pages - 6) / 2.3 + _TRUE["log_seconds"] * (np.log1p(seconds) - 4.5) / 0.65
         + _TRUE["cart_value"] * (cart - 76) / 30 + _TRUE["is_mobile"] * (device == "mobile")
         + _TRUE["is_pro"] * is_pro + _TRUE["age"] * (age[user - 1] - 46) / 16 + _TRUE["bias"])
    purchased = (rng.random(sessions) < 1 / (1 + np.exp(-z))).astype(int)

    events = pd.DataFrame({
        "session_id": np.arange(1, sessions + 1), "user_id": user,
        "start": start.strftime("%Y-%m-%dT%H:%M:%S"), "device": device, "pages": pages,
        "seconds": seconds.astype(str), "cart_value": cart.astype(str), "purchased": purchased})
    bad = lambda: rng.random(sessions) < dirty  # noqa: E731 -- a fresh mask per defect
    events.loc[bad(), "seconds"] = "NA"
    events.loc[bad(), "cart_value"] = ""
    events.loc[bad(), "cart_value"] = "-1.0"
    events.loc[bad(), "start"] = "yesterday"
    duplicates = events[bad()]
    events = pd.concat([events, duplicates]).sample(frac=1.0, random_state=seed)
    events.to_csv(folder / "events.csv", index=False)
    return {"events": folder / "events.csv", "users": folder / "users.jsonl"}


def extract(paths: dict) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Read the raw files as they are (every CSV field as text): ``(events, users, broken_lines)``.

    A JSON line that does not parse is counted and skipped, not fatal: one bad line must not stop
    a nightly job.
    """
    events = pd.read_csv(paths["events"], dtype=str, keep_default_na=False)
    records, broken = [], 0
    with open(paths["users"]) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                broken += 1
    return events, pd.DataFrame.from_records(records), broken


def transform(events: pd.DataFrame, users: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Clean and join: returns ``(table, counts)`` where ``counts`` says how many rows each rule
    removed or repaired.

    Rules: drop exact duplicate sessions; parse numbers and timestamps (unparseable → missing);
    a missing or negative cart value or time, or a bad timestamp, drops the row (we can't guess
    it); a missing age is filled with the median age (a harmless guess for this model); sessions of
    unknown users are dropped by the inner join. Derived features: ``log_seconds``, ``hour``,
    ``is_mobile``, ``is_pro``.
    """
    counts = {"raw_rows": len(events)}
    t = events.drop_duplicates("session_id").copy()
    counts["duplicates"] = counts["raw_rows"] - len(t)
    t["session_id"] = t["session_id"].astype("int64")
    t["user_id"] = t["user_id"].astype("int64")
    t["pages"] = pd.to_numeric(t["pages"], errors="coerce")
    t["seconds"] = pd.to_numeric(t["seconds"], errors="coerce")
    t["cart_value"] = pd.to_numeric(t["cart_value"], errors="coerce")
    t["start"] = pd.to_datetime(t["start"], errors="coerce", format="%Y-%m-%dT%H:%M:%S")
    t["purchased"] = t["purchased"].astype("int64")
    bad = t[["pages", "seconds", "cart_value", "start"]].isna().any(axis=1) | (t["cart_value"] < 0)
    counts["unrepairable"] = int(bad.sum())
    t = t[~bad]
    u = users.copy()
    counts["missing_age_filled"] = int(u["age"].isna().sum()) if "age" in u else len(u)
    u["age"] = u["age"].fillna(u["age"].median()).astype("float64")
    before = len(t)
    t = t.merge(u[["user_id", "country", "plan", "age"]], on="user_id", how="inner")
    counts["unknown_user"] = before - len(t)
    t["log_seconds"] = np.log1p(t["seconds"])
    t["hour"] = t["start"].dt.hour.astype("int64")
    t["is_mobile"] = (t["device"] == "mobile").astype("int64")
    t["is_pro"] = (t["plan"] == "pro").astype("int64")
    t = t.sort_values("session_id").reset_index(drop=True)
    counts["clean_rows"] = len(t)
    cols = ["session_id", "user_id", "start", "country", "device", "plan", "pages", "seconds",
            "cart_value", "log_seconds", "hour", "is_mobile", "is_pro", "age", "purchased"]
    return t[cols], counts


def load(table: pd.DataFrame, path, partition_by: str | None = None) -> Path:
    """Write ``table`` as Parquet with pyarrow (columnar, typed, compressed). With ``partition_by``,
    one folder per value (``country=DE/...``), so a reader can skip whole partitions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    if partition_by:
        pq.write_to_dataset(arrow, root_path=str(path), partition_cols=[partition_by])
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(arrow, str(path))
    return path


def run_etl(folder, sessions: int = 20_000, users: int = 2_000, seed: int = 0):
    """Generate the raw logs in ``folder``, then extract, transform and load them into
    ``folder/sessions.parquet``. Returns ``(table, stages, counts)``; ``stages`` is a tidy table
    with one row per stage: rows out and seconds."""
    folder = Path(folder)
    stages = []
    t0 = time.perf_counter()
    paths = write_raw_shop(folder, sessions=sessions, users=users, seed=seed)
    t1 = time.perf_counter()
    events, users_df, broken = extract(paths)
    t2 = time.perf_counter()
    table, counts = transform(events, users_df)
    t3 = time.perf_counter()
    out = load(table, folder / "sessions.parquet")
    t4 = time.perf_counter()
    counts["broken_json_lines"] = broken
    for stage, rows, secs, path in [("generate raw", len(events), t1 - t0, paths["events"]),
                                    ("extract", len(events), t2 - t1, None),
                                    ("transform", len(table), t3 - t2, None),
                                    ("load (parquet)", len(table), t4 - t3, out)]:
        stages.append({"stage": stage, "rows": rows, "seconds": round(secs, 4),
                       "bytes_on_disk": path.stat().st_size if path else np.nan})
    return table, pd.DataFrame(stages), counts


# --- the same ETL in Spark --------------------------------------------------------------------------
EVENT_COLUMNS = ["session_id", "user_id", "start", "device", "pages", "seconds", "cart_value", "purchased"]


def spark_extract(spark, paths: dict):
    """``(events, users)`` as Spark DataFrames: the CSV with an explicit all-text schema (no pass
    over the file to infer one), the JSON lines with malformed lines dropped. Paths must be
    absolute so that executors on other processes (or machines sharing the folder) can read them."""
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField(name, T.StringType()) for name in EVENT_COLUMNS])
    events = spark.read.csv(str(Path(paths["events"]).resolve()), header=True, schema=schema)
    users = spark.read.json(str(Path(paths["users"]).resolve()), mode="DROPMALFORMED")
    return events, users


def spark_transform(events, users):
    """:func:`transform`'s rules as Spark transformations (nothing runs until an action).

    ``try_cast`` / ``try_to_timestamp`` turn unparseable text into NULL instead of failing the job
    (Spark 4 runs in strict ANSI mode). The median age is the one value computed eagerly.
    """
    from pyspark.sql import functions as F

    typed = (events.dropDuplicates(["session_id"])
             .select(F.col("session_id").cast("long"), F.col("user_id").cast("long"), "device",
                     F.expr("try_cast(pages AS INT)").alias("pages"),
                     F.expr("try_cast(seconds AS DOUBLE)").alias("seconds"),
                     F.expr("try_cast(cart_value AS DOUBLE)").alias("cart_value"),
                     F.try_to_timestamp("start", F.lit("yyyy-MM-dd'T'HH:mm:ss")).alias("start"),
                     F.col("purchased").cast("int").alias("purchased")))
    valid = typed.dropna(subset=["pages", "seconds", "cart_value", "start"]).filter(F.col("cart_value") >= 0)
    median_age = users.select(F.median("age")).first()[0]
    people = users.select("user_id", "plan", F.col("age").cast("double")).fillna({"age": float(median_age)})
    return (valid.join(people, "user_id", "inner")
            .withColumn("log_seconds", F.log1p("seconds"))
            .withColumn("hour", F.hour("start"))
            .withColumn("is_mobile", (F.col("device") == "mobile").cast("int"))
            .withColumn("is_pro", (F.col("plan") == "pro").cast("int")))
