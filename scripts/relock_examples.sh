#!/usr/bin/env bash
# Rewrite the committed example locks that tests/test_reproducible.py compares with a fresh
# build (after a step's version or a pin changes), each from an empty cache, and record the
# CPU they were written on (examples/locks-cpu.json): float kernels differ between CPUs, so
# the keys and digests that depend on float results are compared only on the same kind.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for ex in tiny_cnn text_classifier; do
  echo "== examples/$ex"
  MODELBUILD_CACHE="$scratch/$ex" .venv/bin/modelbuild build -f "examples/$ex/model.build.yaml"
done
.venv/bin/python -c 'import json; from modelbuild.bench.machine import kernel_cpu; print(json.dumps(kernel_cpu(), indent=1))' > examples/locks-cpu.json
echo "wrote examples/locks-cpu.json"
