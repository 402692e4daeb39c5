#!/usr/bin/env bash
# Create .venv and install modelbuild with every CPU toolchain and the test tools,
# pinned by constraints.txt. Re-running it is cheap when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.modelbuild-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first: pinned to the CPU wheel, so no other requirement can pull a CUDA build.
.venv/bin/python -m pip install -q -c constraints.txt torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e '.[all,dev]'
.venv/bin/python -m pip check
echo "$want" > "$stamp"
