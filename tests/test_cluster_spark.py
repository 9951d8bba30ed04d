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


def test_master_names():
    from labkit.cluster.spark import _cores_in, _master_for

    assert _master_for("local[2]", 1) == "local[1]" and _master_for("spark://h:7077", 2) == "spark://h:7077"
    assert _cores_in("local[3]") == 3 and _cores_in("local") == 1 and _cores_in("spark://h:7077") is None
