# labkit: `make run` (the lab's main job), `make test` (the suite), `make lab` (JupyterLab).
# Each target sets everything up first, idempotently: a second run with nothing changed only
# checks the stamp below.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.labkit-ready
SETUP_INPUTS := requirements.txt pyproject.toml tools/setup.sh tools/build_horovod.sh tools/install_nodeps.sh tools/apt-packages.txt tools/jupyterlab-overrides.json deploy/jupyterhub/package-lock.json

.PHONY: setup run test lab hub bench doctor clean distclean

setup: $(STAMP)

$(STAMP): $(SETUP_INPUTS)
	@rm -f $(STAMP)
	@bash tools/setup.sh
	@touch $(STAMP)

## run: execute every notebook in notebooks/ (fast mode) and write build/report.{json,html}
run: setup
	$(PY) -m labkit run notebooks --assignments assignments --build build

## test: the whole pytest suite
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

## lab: JupyterLab on the lab (http://localhost:8888); as root (containers, CI) it needs --allow-root
lab: setup
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

## hub: the course hub on http://127.0.0.1:8600 (as root), DEMO-ONLY logins for the students in HUB_STUDENTS.
## HUB_ARGS passes more options to 'labkit hub serve' (--course DIR, --port N, --keep-servers).
HUB_STUDENTS ?= alice bob
hub: setup
	$(PY) -m labkit hub serve --demo --students $(HUB_STUDENTS) $(HUB_ARGS)

## bench: every benchmark in bench/ (each prints a JSON line last)
bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

doctor: setup
	$(PY) -m labkit doctor

clean:
	rm -rf build .pytest_cache

## distclean: also remove .venv (the Horovod wheel stays cached in ~/.cache/labkit)
distclean: clean
	rm -rf $(VENV)
