#!/usr/bin/env bash
# Build Horovod from its PyPI sdist against the TensorFlow in .venv, with Gloo, and install it.
#
# Why from source: Horovod's last release (0.28.1) ships only as an sdist, and upstream does not
# yet support TF >= 2.16 / Keras 3. ../shared/DESIGN.md §1 records what this needs:
#   1. CMake >= 4 rejects the bundled Gloo; we pin cmake 3.x and also set CMAKE_POLICY_VERSION_MINIMUM.
#   2. TF 2.21's wheel lacks the XLA headers that xla_mpi_ops.cc needs; that file only adds the
#      opt-in XLA custom-call ops, so we drop it from the TensorFlow CMakeLists.
#   3. Horovod 0.28.1's Gloo process-set context never receives HOROVOD_GLOO_IFACE (a bug in
#      GlooContext::InitializeForProcessSet), so Gloo resolves the hostname instead: across hosts,
#      a hostname on 127.0.0.1/127.0.1.1 (Debian's default) kills the job ("gloo::IoException ...
#      Connection refused") and --network-interfaces is ignored on the data path. One line copies
#      the global context's interface (tests/test_cluster_horovod.py runs the failing case).
#   4. (run time) Keras 3 variables lack .ref(); labkit.distributed carries that workaround.
# The wheel is cached per Horovod+TensorFlow version *and* patch set (PATCHES below), so a
# wheel built without a fix is never reused; later runs install the cached one in seconds.
#
# Usage: tools/build_horovod.sh [--force] [VENV]   (default .venv)
#   --force: rebuild from source even if installed or cached (e.g. after changing TensorFlow).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
venv=${1:-$here/.venv}
reqs=${LABKIT_REQUIREMENTS:-$here/requirements.txt}
py=$venv/bin/python
say() { printf '[horovod] %s\n' "$*"; }
die() { printf '[horovod] error: %s\n' "$*" >&2; exit 1; }
# pip on some machines warns about index folders in its config that do not exist: noise, not news.
quiet_pip() { grep -v "is neither a file nor a directory" || true; }

[ -x "$py" ] || die "no Python at $py; run tools/setup.sh (or 'make setup') first."
hvd_version=$(sed -n 's/^horovod==\([^ ]*\).*/\1/p' "$reqs")
[ -n "$hvd_version" ] || die "$reqs has no 'horovod==' pin."
# Bump when the source patches below change: it names the cache folder and the install stamp.
PATCHES=noxla-glooiface1
tf_version=$("$py" -c 'import importlib.metadata as m; print(m.version("tensorflow-cpu"))' 2>/dev/null) \
  || die "TensorFlow is not installed in $venv; Horovod must be built against it. Run 'make setup'."

installed=$("$py" -c 'import importlib.metadata as m; print(m.version("horovod"))' 2>/dev/null || true)
stamp=$venv/.labkit-horovod
key="horovod-$hvd_version tf-$tf_version $PATCHES"
# Cheap check (no TF import): the right version, built with today's patches, with its
# TensorFlow extension library present.
if [ $force = 0 ] && [ "$installed" = "$hvd_version" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ] && "$py" -c 'import glob, importlib.util, os, sys
spec = importlib.util.find_spec("horovod")
sys.exit(not glob.glob(os.path.join(os.path.dirname(spec.origin), "tensorflow", "mpi_lib*.so")))' 2>/dev/null; then
  say "horovod $hvd_version already installed and importable."
  exit 0
fi

cache=${LABKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/labkit}/wheels/tf-$tf_version-$PATCHES
mkdir -p "$cache"
wheel=$(ls "$cache"/horovod-"$hvd_version"-*.whl 2>/dev/null | head -n1 || true)
[ $force = 0 ] || wheel=""
if [ -z "$wheel" ]; then
  command -v c++ >/dev/null 2>&1 || die "no C++ compiler found. Horovod is compiled from source: install one (Debian: 'apt-get install -y g++ make') and re-run."
  command -v make >/dev/null 2>&1 || die "'make' not found. Debian: 'apt-get install -y make'."
  "$py" -c 'import sysconfig,os,sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")))' \
    || die "Python headers (Python.h) not found. Debian: 'apt-get install -y python3.11-dev'."
  work=$(mktemp -d "${TMPDIR:-/tmp}/labkit-horovod.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  say "building horovod $hvd_version against tensorflow-cpu $tf_version (about 3 minutes on 2 cores)..."
  "$py" -m pip download --quiet --no-deps --no-binary :all: "horovod==$hvd_version" -d "$work" 2> >(quiet_pip >&2)
  tar -xzf "$work/horovod-$hvd_version.tar.gz" -C "$work"
  src=$work/horovod-$hvd_version
  sed -i '/xla_mpi_ops\.cc/d' "$src/horovod/tensorflow/CMakeLists.txt"
  # Fix 3: the process-set Gloo context uses the global context's interface (HOROVOD_GLOO_IFACE).
  gloo_cc=$src/horovod/common/gloo/gloo_context.cc
  sed -i '/^void GlooContext::InitializeForProcessSet(/,/^  device_attr.iface = gloo_iface_;/ s/^  device_attr.iface = gloo_iface_;/  gloo_iface_ = global_context.gloo_iface_;  \/\/ labkit: was never set here\n&/' "$gloo_cc"
  [ "$(grep -c 'gloo_iface_ = global_context.gloo_iface_;' "$gloo_cc")" = 1 ] \
    || die "could not apply the Gloo interface fix to $gloo_cc (did the Horovod source change?)"
  log=$work/build.log
  if ! PATH="$venv/bin:$PATH" CMAKE_POLICY_VERSION_MINIMUM=3.5 \
      HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
      HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
      MAKEFLAGS="-j$(nproc)" HOROVOD_BUILD_ARCH_FLAGS="" \
      "$py" -m pip wheel --no-build-isolation --no-deps -w "$work/dist" "$src" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "the Horovod build failed (last lines above)."
  fi
  # Move into the cache only once complete, so an interrupted build never leaves a bad wheel.
  built=$(ls "$work"/dist/horovod-*.whl)
  mv "$built" "$cache/"
  wheel=$cache/$(basename "$built")
  say "cached $wheel"
else
  say "using cached wheel $wheel"
fi
"$py" -m pip install --quiet --no-deps --force-reinstall "$wheel" 2> >(quiet_pip >&2)
# TensorFlow's start-up chatter (oneDNN, absl) is only shown when the import fails.
if ! check_log=$(TF_CPP_MIN_LOG_LEVEL=2 "$py" -c 'import horovod.tensorflow as hvd; assert hvd.gloo_built(), "Horovod was built without Gloo"' 2>&1); then
  echo "$check_log" >&2
  die "horovod installed but 'import horovod.tensorflow' failed."
fi
echo "$key" > "$stamp"
say "horovod $hvd_version installed."
