"""labkit doctor reports Java and Spark, and says how to fix them when they are missing."""
import shutil

import pytest

from labkit import doctor


def test_java_and_spark_are_reported():
    checks = {c.name: c for c in doctor.collect(brief=True)}
    assert "java" in checks and "pyspark" in checks
    if shutil.which("java") is None:
        pytest.skip("no java here (make setup installs it as root)")
    assert checks["java"].ok and int(checks["java"].value.split(".")[0]) >= 17
    assert checks["pyspark"].ok and checks["pyspark"].value.startswith("4.3.0") and "jars" in checks["pyspark"].value


def test_missing_java_and_pyspark_name_their_fix(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name, *a, **k: None)
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda dist: None if dist == "pyspark" else real(dist))
    checks = {c.name: c for c in doctor.collect(brief=True)}
    assert not checks["java"].ok and "openjdk-17" in checks["java"].fix
    assert not checks["pyspark"].ok and "make setup" in checks["pyspark"].fix
    assert "NO  java" in doctor.format_report(list(checks.values()))
