#!/usr/bin/env bash
# Set up (.venv, pinned) and build the bundled examples.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
for recipe in examples/*/model.build.yaml; do
  echo "== $recipe"
  .venv/bin/modelbuild build -f "$recipe" "$@"
done
