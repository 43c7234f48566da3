"""The examples in the public docstrings run and print what they claim (the real embedded model)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "qr_integrations",
    "qr_integrations._adapter",
    "qr_integrations.core.aggregate",
    "qr_integrations.core.chunking",
    "qr_integrations.core.config",
    "qr_integrations.core.context",
    "qr_integrations.core.detection",
    "qr_integrations.core.engine",
    "qr_integrations.core.fusion",
    "qr_integrations.core.heads",
    "qr_integrations.core.layout",
    "qr_integrations.core.models",
    "qr_integrations.core.pipeline",
    "qr_integrations.core.prior",
    "qr_integrations.core.prompt",
    "qr_integrations.core.reference",
    "qr_integrations.core.results",
    "qr_integrations.core.scorer",
    "qr_integrations.core.validate",
    "qr_integrations.core.windows",
    "qr_integrations.langchain",
    "qr_integrations.llama_index",
    "qr_integrations.rankfile",
    "qr_integrations.serving.app",
    "qr_integrations.serving.service",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, one_torch_thread: None) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    assert tests, f"{name} has no docstring example"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (see the output above)"
