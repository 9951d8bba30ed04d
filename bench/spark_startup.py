"""Spark start-up and a first small job, with the JVM's default JIT (C1 + C2) against C1 only.

labkit.cluster.spark starts the driver JVM with -XX:TieredStopAtLevel=1 (C1 only), on the bet
that the lab's short jobs on 2 cores lose more to the optimising C2 compiler's work than they gain.
This measures the bet side by side: each trial is a fresh Python process that starts a local[2]
session, runs lab 11's ETL on 10 000 sessions and fits its pipeline, alternating the two settings.

    .venv/bin/python bench/spark_startup.py [--trials 3]

Readable lines, then one JSON object as the last line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

TRIAL = r"""
import json, sys, tempfile, time
from pathlib import Path
from labkit import data
from labkit.cluster import spark as sp
from labkit.data import etl
opts = sys.argv[1]
t0 = time.perf_counter()
spark, start = sp.timed_session(master="local[2]", conf={"spark.driver.extraJavaOptions": opts})
folder = Path(tempfile.mkdtemp(prefix="labkit-bench-"))
paths = data.write_raw_shop(folder, sessions=10_000, users=1_000)
t = time.perf_counter()
clean = etl.spark_transform(*etl.spark_extract(spark, paths))
clean.write.parquet(str(folder / "c.parquet"))
etl_s = time.perf_counter() - t
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import StandardScaler, VectorAssembler
pipe = Pipeline(stages=[VectorAssembler(inputCols=etl.FEATURES, outputCol="r"),
                        StandardScaler(inputCol="r", outputCol="features", withMean=True),
                        LogisticRegression(labelCol="purchased", maxIter=10)])
t = time.perf_counter()
pipe.fit(spark.read.parquet(str(folder / "c.parquet")))
fit_s = time.perf_counter() - t
sp.shutdown()
print(json.dumps({"start_s": start, "etl_s": etl_s, "fit_s": fit_s, "total_s": time.perf_counter() - t0}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    from labkit.cluster.spark import LOG_CONFIG

    log = f"-Dlog4j2.configurationFile=file:{LOG_CONFIG}"
    variants = {"C1+C2 (JVM default)": log, "C1 only (labkit)": f"-XX:TieredStopAtLevel=1 {log}"}
    runs = {name: [] for name in variants}
    for trial in range(args.trials):
        for name, opts in variants.items():
            out = subprocess.run([sys.executable, "-c", TRIAL, opts], capture_output=True, text=True,
                                 timeout=900, cwd=tempfile.gettempdir())
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            r = json.loads(out.stdout.strip().splitlines()[-1])
            runs[name].append(r)
            print(f"trial {trial + 1} {name:22s} start {r['start_s']:5.1f} s  ETL {r['etl_s']:5.1f} s  "
                  f"fit {r['fit_s']:5.1f} s  total {r['total_s']:5.1f} s", flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    c2, c1 = med["C1+C2 (JVM default)"], med["C1 only (labkit)"]
    result = {"trials": args.trials, "median": med,
              "c1_over_c2_total": c1["total_s"] / c2["total_s"], "c1_over_c2_start": c1["start_s"] / c2["start_s"]}
    print(f"median total: C1+C2 {c2['total_s']:.1f} s, C1 only {c1['total_s']:.1f} s "
          f"(ratio {result['c1_over_c2_total']:.2f})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
