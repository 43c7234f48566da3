"""Model sharing between the adapters, one config for scorer and adapters, and import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")
pytest.importorskip("langchain_core")

from qr_integrations import ConfigError, QRScorer, ScorerConfig
from qr_integrations.core.config import RANKED_INPUT
from qr_integrations.core.models import load_count, loaded_models, resolve_device, resolve_dtype, resolve_source
from qr_integrations.langchain import QRHeadDocumentCompressor
from qr_integrations.llama_index import QRHeadNodePostprocessor


def registry_key(config: ScorerConfig) -> tuple[str, str, str]:
    device = resolve_device(config.device)
    _, source = resolve_source(config.model)
    return source, str(device), str(resolve_dtype(config.dtype, device))


def test_both_adapters_load_the_model_once() -> None:
    key = registry_key(ScorerConfig())
    was_loaded = key in loaded_models()
    before = load_count(key)
    adapters = [QRHeadNodePostprocessor(), QRHeadDocumentCompressor(top_n=3)]
    adapters += [QRHeadNodePostprocessor(top_n=n, heads="all") for n in range(1, 5)]
    adapters += [QRHeadDocumentCompressor(max_tokens=100 * n, device="auto") for n in range(1, 5)]
    models = [a.scorer.loaded for a in adapters]
    assert all(m is models[0] for m in models)
    assert load_count(key) == before + (0 if was_loaded else 1)
    assert loaded_models().count(key) == 1
    assert QRScorer().loaded is models[0]  # a plain scorer shares it too


def test_one_config_file_for_scorer_and_both_adapters(tmp_path: Path) -> None:
    yaml_file = tmp_path / "scorer.yaml"
    yaml_file.write_text("heads: all\ndevice: cpu\nmax_context_tokens: 2048\ncalibrate: true\nnull_query: N/A\n")
    scorer = QRScorer.from_config(yaml_file)
    pp = QRHeadNodePostprocessor.from_config(yaml_file, top_n=3)
    lc = QRHeadDocumentCompressor.from_config(str(yaml_file), keep_order=True)
    # the file's keys reach all three; the adapters, whose items come in a retriever's order, take the
    # ranked-input settings for the position corrections the file does not name
    ranked = {k: v for k, v in RANKED_INPUT.items() if k != "layout"}
    assert pp.scorer_config == lc.scorer_config == scorer.config.replace(**ranked)
    assert pp.top_n == 3 and lc.keep_order is True
    assert pp.scorer_options == {"max_context_tokens": 2048}
    assert pp.scorer.loaded is lc.scorer.loaded is scorer.loaded


def test_component_config_in_json_dict_and_text(tmp_path: Path) -> None:
    spec = {"device": "cpu", "heads": [[3, 1], [5, 2]], "top_n": 2, "score_threshold": 0.1, "chunk_size": 64}
    json_file = tmp_path / "reranker.json"
    json_file.write_text(json.dumps(spec))
    from_file = QRHeadDocumentCompressor.from_config(json_file)
    assert from_file.heads == "3-1,5-2" and from_file.top_n == 2 and from_file.scorer_options == {"chunk_size": 64}
    assert QRHeadDocumentCompressor.from_config(spec).model_dump() == from_file.model_dump()
    pp = QRHeadNodePostprocessor.from_config("top_n: 2\nkeep_retrieval_score: true\ncalibrate: false\n")
    assert pp.keep_retrieval_score and pp.scorer_config.calibrate is False
    assert QRHeadNodePostprocessor.from_config(pp.to_dict()).to_dict() == pp.to_dict()
    assert QRHeadNodePostprocessor.from_config(ScorerConfig(heads="all")).heads == "all"


def test_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['topn'\].*top_n"):
        QRHeadNodePostprocessor.from_config({"topn": 3})
    with pytest.raises(ConfigError, match="keep_retrieval_scores"):  # a typo of a LlamaIndex-only field
        QRHeadDocumentCompressor.from_config({"keep_retrieval_scores": True})
    with pytest.raises(ConfigError, match="max_context_tokens"):
        QRHeadDocumentCompressor.from_config({"max_context_tokens": 5})
    with pytest.raises(ConfigError, match="does not exist"):
        QRHeadDocumentCompressor.from_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        QRHeadNodePostprocessor.from_config("- a list\n- not a mapping\n")
    with pytest.raises(ValueError, match="scorer_options may not hold"):
        QRHeadDocumentCompressor(scorer_options={"model": "x"})
    with pytest.raises(ValueError, match="head"):
        QRHeadDocumentCompressor(heads="no-such-head-set")


def test_changing_a_field_rebuilds_the_scorer() -> None:
    lc = QRHeadDocumentCompressor(scorer_options={"max_context_tokens": 1024})
    first = lc.scorer
    assert lc.scorer is first
    lc.scorer_options = {"max_context_tokens": 2048}
    assert lc.scorer is not first and lc.scorer.config.max_context_tokens == 2048


def test_package_imports_without_either_framework() -> None:
    code = (
        "import sys\n"
        "for name in ('llama_index', 'llama_index.core', 'langchain_core', 'langchain_classic'):\n"
        "    sys.modules[name] = None\n"
        "import qr_integrations\n"
        "assert not any(m.startswith(('llama_index', 'langchain')) and sys.modules[m] for m in sys.modules)\n"
        "adapters = {'qr_integrations.llama_index': '[llama-index]', 'qr_integrations.langchain': '[langchain]'}\n"
        "for mod, hint in adapters.items():\n"
        "    try:\n"
        "        __import__(mod)\n"
        "    except ImportError as exc:\n"
        "        assert hint in str(exc), exc\n"
        "    else:\n"
        "        raise AssertionError(mod)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_copies_and_pickles_share_the_model_instead_of_carrying_it() -> None:
    import copy
    import pickle

    pp = QRHeadNodePostprocessor(top_n=2)
    lc = QRHeadDocumentCompressor(top_n=2)
    loaded = pp.scorer.loaded
    assert lc.scorer.loaded is loaded
    for component in (pp, lc):
        for clone in (copy.deepcopy(component), pickle.loads(pickle.dumps(component))):
            assert clone._scorer is None and clone.top_n == 2
            assert clone.scorer.loaded is loaded
        assert component._scorer is not None  # the original keeps its scorer
