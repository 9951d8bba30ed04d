"""The Spark session helper starts a real local Spark (a JVM), with the UI off and the cores asked."""
import shutil

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java (make setup installs it)")]


def test_local_session_runs_a_job_and_restarts_with_other_cores(tmp_path):
    from labkit.cluster import spark as sp

    spark, seconds = sp.timed_session(master="local[2]", app_name="labkit-test")
    try:
        info = sp.describe(spark)
        assert info["master"] == "local[2]" and info["default_parallelism"] == 2 and seconds > 0
        assert spark.conf.get("spark.ui.enabled") == "false" and info["shuffle_partitions"] == 4
        df = spark.createDataFrame([(i, i % 3) for i in range(30)], ["x", "k"])
        path = str(tmp_path / "t.parquet")
        df.write.parquet(path)
        counts = {r["k"]: r["count"] for r in spark.read.parquet(path).groupBy("k").count().collect()}
        assert counts == {0: 10, 1: 10, 2: 10}
        spark, again = sp.timed_session(master="local[2]", cores=1)
        assert sp.describe(spark)["master"] == "local[1]" and sp.describe(spark)["default_parallelism"] == 1
    finally:
        sp.stop(spark)
        sp.stop(spark)  # twice is fine
        sp.shutdown()   # and the JVM ends: the test leaves no process behind


def test_master_names():
    from labkit.cluster.spark import _cores_in, _master_for

    assert _master_for("local[2]", 1) == "local[1]" and _master_for("spark://h:7077", 2) == "spark://h:7077"
    assert _cores_in("local[3]") == 3 and _cores_in("local") == 1 and _cores_in("spark://h:7077") is None


def test_spark_etl_keeps_the_same_rows_as_the_pandas_etl(tmp_path):
    from labkit import data
    from labkit.cluster import spark as sp
    from labkit.data import etl

    paths = data.write_raw_shop(tmp_path, sessions=2000, users=200, seed=5)
    table, _ = etl.transform(*etl.extract(paths)[:2])
    spark = sp.session(master="local[2]", app_name="labkit-test-etl")
    try:
        clean = etl.spark_transform(*etl.spark_extract(spark, paths))
        rows = clean.select("session_id", "purchased", "age", "is_pro").collect()
        assert sorted(r["session_id"] for r in rows) == sorted(table["session_id"])
        by_id = table.set_index("session_id")
        for r in rows[:50]:
            assert r["purchased"] == by_id.loc[r["session_id"], "purchased"]
            assert r["is_pro"] == by_id.loc[r["session_id"], "is_pro"]
            assert abs(r["age"] - by_id.loc[r["session_id"], "age"]) < 1e-9
    finally:
        sp.shutdown()
