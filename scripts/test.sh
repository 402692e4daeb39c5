#!/usr/bin/env bash
# Set up (.venv, pinned) and run the whole test suite. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONDONTWRITEBYTECODE=1
exec .venv/bin/python -m pytest -q -ra "$@"
