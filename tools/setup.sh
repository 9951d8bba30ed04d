#!/usr/bin/env bash
# Set up labkit's .venv on a fresh machine, idempotently: Python 3.11 check, pinned
# dependencies from requirements.txt, Horovod built from source (tools/build_horovod.sh),
# system packages the lab needs, and labkit itself (editable). A re-run with nothing changed
# only checks stamps and takes a second or two; an interrupted run is recovered by re-running.
#
# Environment: PYTHON (the 3.11 to build from), LABKIT_VENV (default .venv),
# LABKIT_REQUIREMENTS (default requirements.txt; without a horovod pin, Horovod is skipped).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
venv=${LABKIT_VENV:-$here/.venv}
reqs=${LABKIT_REQUIREMENTS:-$here/requirements.txt}
[ -f "$reqs" ] || { printf '[setup] error: no requirements file at %s\n' "$reqs" >&2; exit 1; }
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }
digest() { cat "$@" | sha256sum | cut -c1-16; }

# --- 1. a Python 3.11 to build the venv from --------------------------------------------------
python=${PYTHON:-}
if [ -z "$python" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1; then python=$(command -v "$cand"); break; fi
  done
fi
[ -n "$python" ] || die "no Python found. labkit needs Python 3.11: install it (Debian 12: 'apt-get install -y python3 python3-venv python3-dev') or set PYTHON=/path/to/python3.11."
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
  || die "'$python' does not run. Set PYTHON=/path/to/python3.11."
[ "$pyver" = "3.11" ] || die "labkit needs Python 3.11 (TensorFlow 2.21 + Horovod 0.28.1 are pinned for it), but '$python' is Python $pyver. Install 3.11 or set PYTHON=/path/to/python3.11, then re-run."

# --- 2. system packages (Debian) -------------------------------------------------------------
# Only what is missing is installed, and only when we can (root with apt-get).
need_apt=()
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
while read -r pkg cmd; do
  case "$pkg" in ''|'#'*) continue ;; esac
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done < tools/apt-packages.txt
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    say "warning: missing system packages: ${need_apt[*]} (not root, or no apt-get). Install them yourself; the parts that need them will say so."
  fi
fi

# --- 3. the virtual environment --------------------------------------------------------------
if [ -e "$venv" ] && ! "$venv/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  say "found a broken or foreign .venv (interrupted run?); recreating it."
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  say "creating .venv with $python (Python $pyver)"
  "$python" -m venv "$venv" 2>/dev/null || { rm -rf "$venv"; die "'$python -m venv' failed. Debian: 'apt-get install -y python3.11-venv'."; }
fi
vpy=$venv/bin/python

deps_stamp=$venv/.labkit-deps
deps_hash=$(digest "$reqs")
if [ "$(cat "$deps_stamp" 2>/dev/null)" != "$deps_hash" ]; then
  say "installing pinned dependencies from $(basename "$reqs") (a few minutes the first time)..."
  grep -vE '^\s*(#|$|horovod==)' "$reqs" | grep -vE '#\s*no-deps' > "$venv/.labkit-requirements.txt" || true
  # (the grep drops the noise that a missing local index in some pip configs prints per package)
  status=0
  "$vpy" -m pip install --quiet --disable-pip-version-check -r "$venv/.labkit-requirements.txt" 2>&1 \
    | { grep -v "is neither a file nor a directory" || true; } >&2 || status=$?
  [ $status = 0 ] || die "pip could not install $(basename "$reqs") (see above). Re-run 'make setup' once the cause is fixed; finished packages are kept."
  echo "$deps_hash" > "$deps_stamp"
else
  say "dependencies up to date."
fi

# Packages whose declared dependencies are wrong for this stack: pinned, hash-checked, no deps.
bash tools/install_nodeps.sh "$vpy" "$reqs" || die "could not install the no-deps packages (see above)."

# --- 4. Horovod, built from source with a cached wheel ---------------------------------------
if grep -q '^horovod==' "$reqs"; then
  LABKIT_REQUIREMENTS=$reqs tools/build_horovod.sh "$venv"
else
  say "no horovod pin in $(basename "$reqs"): skipping Horovod."
fi

# --- 5. labkit itself ------------------------------------------------------------------------
# -I keeps the current folder off sys.path, so this sees only what is installed in .venv.
if ! "$vpy" -I -c 'import labkit, sys; sys.exit(not labkit.__file__.startswith(sys.argv[1]))' "$here/labkit" 2>/dev/null; then
  "$vpy" -m pip install --quiet --no-deps --no-build-isolation -e . || die "could not install labkit itself."
fi
# JupyterLab asks every new user whether to fetch Jupyter's news from the internet: the lab
# works offline, so the answer is set once for everyone who uses this environment.
mkdir -p "$venv/share/jupyter/lab/settings"
cp tools/jupyterlab-overrides.json "$venv/share/jupyter/lab/settings/overrides.json"
# The notebooks' "python3" kernel is this venv's Python.
# It starts labkit.kernel: ipykernel without TensorFlow's start-up lines (labkit/kernel.py).
if "$vpy" -c 'import ipykernel' 2>/dev/null; then
  "$vpy" -m labkit.kernel --install >/dev/null
fi
say "ready: $("$vpy" -m labkit doctor --brief 2>/dev/null || echo 'labkit installed')"
