#!/usr/bin/env bash
# Create .venv and install modelbuild with every CPU toolchain and the test tools,
# pinned by constraints.txt. Re-running it is cheap when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Headless Chromium for tests/test_browser_report.py (it skips, saying why, without one):
# installed from the distribution's packages when missing, only as root or in CI, quietly;
# a failure is a note, never a failed setup. MODELBUILD_NO_BROWSER=1 skips this.
if [ -z "${MODELBUILD_NO_BROWSER:-}" ] && ! command -v chromium >/dev/null 2>&1 \
  && ! command -v chromium-browser >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif [ -n "${CI:-}" ]; then sudo="sudo -n"; else sudo=none; fi
  if [ "$sudo" != none ]; then
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends chromium; } >/dev/null 2>&1 \
      || echo "note: could not install chromium; the browser test will skip" >&2
  fi
fi
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
