#!/usr/bin/env bash
# Install the requirements.txt lines marked "# no-deps": pinned, hash-checked, without their
# declared dependencies (which are wrong for this stack; each line's comment says why).
# Used by tools/setup.sh and binder/postBuild, so that both environments get the same packages.
#
# Usage: tools/install_nodeps.sh PYTHON [REQUIREMENTS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${1:?usage: tools/install_nodeps.sh PYTHON [REQUIREMENTS]}
reqs=${2:-${LABKIT_REQUIREMENTS:-$here/requirements.txt}}
say() { printf '[no-deps] %s\n' "$*"; }
list=$(mktemp)
trap 'rm -f "$list"' EXIT
# The requirement part of each marked line (name==version --hash=...), without the comment.
grep -E '#\s*no-deps' "$reqs" | grep -vE '^\s*#' | sed 's/#.*//' > "$list" || true
[ -s "$list" ] || { say "nothing to install."; exit 0; }
missing=0
while read -r spec _; do
  name=${spec%%==*}; want=${spec#*==}
  have=$("$py" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name" 2>/dev/null || true)
  [ "$have" = "$want" ] || missing=1
done < "$list"
if [ $missing = 0 ]; then say "up to date."; exit 0; fi
say "installing $(awk '{print $1}' "$list" | paste -sd' ') (without dependencies, hash-checked)..."
"$py" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r "$list" 2>&1 \
  | { grep -v "is neither a file nor a directory" || true; } >&2
status=${PIPESTATUS[0]}
[ "$status" = 0 ] || { printf '[no-deps] error: pip failed (see above).\n' >&2; exit 1; }
