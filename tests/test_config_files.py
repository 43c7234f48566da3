"""One config file fits the scorer, both adapters and the CLI; bad sources and values get clear errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from qr_integrations import ConfigError, QRScorer, ScorerConfig
from qr_integrations.core.config import COMPONENT_KEYS, QRHEAD_SCORING, RANKED_INPUT, read_config_mapping

# the scorer's own defaults for the position corrections (a component's file names none of them)
SCORER_CORRECTIONS = {k: getattr(ScorerConfig(), k) for k in QRHEAD_SCORING}

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCS = Path(__file__).resolve().parents[1] / "docs"


def documented_reranker_yaml() -> str:
    """The ``reranker.yaml`` of docs/configuration.md, as the docs show it."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(# reranker\.yaml\n.*?)```", text, re.S)
    assert block, "docs/configuration.md shows reranker.yaml"
    return block.group(1)


def adapters() -> list[Any]:
    pytest.importorskip("llama_index.core")
    pytest.importorskip("langchain_core")
    from qr_integrations.langchain import QRHeadDocumentCompressor
    from qr_integrations.llama_index import QRHeadNodePostprocessor

    return [QRHeadNodePostprocessor, QRHeadDocumentCompressor]


# ---------------------------------------------------------------------------------------------- sources


def test_bad_sources_are_clear_config_errors(tmp_path: Path) -> None:
    readers = [ScorerConfig.load, QRScorer.from_config, *(cls.from_config for cls in adapters())]
    for read in readers:
        with pytest.raises(ConfigError, match="config is None"):
            read(None)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="empty string"):
            read("")
        with pytest.raises(ConfigError, match=r"'configs/reranker' is no file \(none exists at that path\)"):
            read("configs/reranker")
        with pytest.raises(ConfigError, match="does not exist"):
            read(tmp_path / "reranker")  # a Path is always a file
        with pytest.raises(ConfigError, match="does not exist"):
            read(str(tmp_path / "reranker.yml"))
        with pytest.raises(ConfigError, match="must be a ScorerConfig, a dict"):
            read(42)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="mapping"):
            read("- a list\n- not a mapping\n")


def test_an_existing_file_without_extension_is_read(tmp_path: Path) -> None:
    path = tmp_path / "reranker"
    path.write_text("heads: all\ncalibrate: false\n")
    assert read_config_mapping(str(path)) == {"heads": "all", "calibrate": False}
    assert QRScorer.from_config(str(path)).config.calibrate is False
    assert ScorerConfig.load(path).heads == "all"


# ---------------------------------------------------------------------------------------------- one file


def test_the_documented_reranker_yaml_fits_everywhere(tmp_path: Path) -> None:
    from qr_integrations.cli import build_parser, scorer_from_args

    path = tmp_path / "reranker.yaml"
    path.write_text(documented_reranker_yaml())
    expected = ScorerConfig(heads="all", device="cpu", max_context_tokens=4096)
    assert ScorerConfig.load(path) == expected
    assert QRScorer.from_config(path).config == expected
    assert QRScorer(config=str(path)).config == expected
    args = build_parser().parse_args(["rank", "-q", "q", "-c", "-", "--config", str(path)])
    assert scorer_from_args(args).config.replace(show_progress=False) == expected
    for cls in adapters():
        component = cls.from_config(path)
        # candidates in a retriever's order: the position corrections the file does not name stay off
        assert component.scorer_config == expected.replace(**{k: v for k, v in RANKED_INPUT.items() if k != "layout"})
        assert (component.top_n, component.max_tokens, component.keep_order) == (3, 1500, True)


def test_a_serialised_component_fits_the_other_adapter_and_the_scorer() -> None:
    postprocessor_cls, compressor_cls = adapters()
    pp = postprocessor_cls(top_n=2, heads="all", keep_retrieval_score=True, metadata_mode="none", calibrate=False,
                           fusion="weighted")
    lc = compressor_cls.from_config(pp.to_dict())  # LlamaIndex-only keys are skipped, not refused
    assert lc.scorer_config == pp.scorer_config and (lc.top_n, lc.fusion) == (2, "weighted")
    back = postprocessor_cls.from_config(lc.model_dump())  # LangChain's run name is skipped too
    assert back.scorer_config == pp.scorer_config
    # scorer_options are read as scorer keys; the component's layout becomes the scorer's default layout
    # (the scorer takes its own defaults for the position corrections the file does not name)
    assert ScorerConfig.load(pp.to_dict()) == pp.scorer_config.replace(layout="reversed", **SCORER_CORRECTIONS)
    assert QRScorer.from_config(lc.model_dump()).config == lc.scorer_config.replace(layout="reversed",
                                                                                    **SCORER_CORRECTIONS)


def test_truly_unknown_keys_are_still_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['topn'\]"):
        ScorerConfig.load({"topn": 3, "top_n": 3})
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['top_n'\]"):
        ScorerConfig.from_dict({"top_n": 3})  # from_dict reads scorer keys only
    with pytest.raises(ConfigError, match="both at the top level and in scorer_options"):
        ScorerConfig.load({"calibrate": True, "scorer_options": {"calibrate": False}})
    for cls in adapters():
        with pytest.raises(ConfigError, match="keep_retrieval_scores"):
            cls.from_config({"keep_retrieval_scores": True})


def test_component_keys_are_the_adapters_own_fields() -> None:
    from qr_integrations._adapter import SCORER_KEYS

    own = set()
    for cls in adapters():
        own |= set(cls.model_fields) - set(SCORER_KEYS) - {"scorer_options"}
    assert own | {"class_name"} == set(COMPONENT_KEYS)


def test_to_yaml_round_trips_and_feeds_the_scorer(tmp_path: Path) -> None:
    for cls in adapters():
        component = cls(top_n=3, heads="3-1,5-2", max_tokens=500, keep_order=True, max_context_tokens=2048,
                        fusion="none", layout="input")
        text = component.to_yaml(tmp_path / "c.yaml")
        assert (tmp_path / "c.yaml").read_text() == text
        data = read_config_mapping(text)
        assert "scorer_options" not in data and data["max_context_tokens"] == 2048 and data["top_n"] == 3
        again = cls.from_config(tmp_path / "c.yaml")
        assert again.model_dump(exclude={"callback_manager"}) == component.model_dump(exclude={"callback_manager"})
        assert QRScorer.from_config(text).config == component.scorer_config.replace(layout="input",
                                                                                    **SCORER_CORRECTIONS)


# ---------------------------------------------------------------------------------------------- values


def test_booleans_are_strict_everywhere() -> None:
    with pytest.raises(ConfigError, match="config key 'calibrate': expected true or false"):
        ScorerConfig.load("calibrate: 'yes'")
    for cls in adapters():
        with pytest.raises(ConfigError, match="config key 'keep_order'.*boolean.*'yes'"):
            cls.from_config("keep_order: 'yes'")
        with pytest.raises(ConfigError, match="config key 'top_n'"):
            cls.from_config("top_n: '3'")
        assert cls.from_config("keep_order: true").keep_order is True


def test_heads_errors_show_the_l_h_syntax() -> None:
    with pytest.raises(ConfigError, match=r"'L3H1' is not a head list \(did you mean '3-1'\?\).*L-H syntax"):
        ScorerConfig(heads="L3H1")
    with pytest.raises(ConfigError, match=r"did you mean '3-1,12-4'"):
        ScorerConfig.load("heads: 3:1 12:4")
    with pytest.raises(ConfigError, match="L-H syntax"):
        ScorerConfig(heads="no-such-set")
    for cls in adapters():
        with pytest.raises(ValueError, match=r"did you mean '3-1'.*L-H syntax"):
            cls(heads="L3H1")


def test_num_threads_is_validated() -> None:
    assert ScorerConfig(num_threads=1).num_threads == 1
    for bad in (0, "2", 1.5, True):
        with pytest.raises(ConfigError, match="num_threads"):
            ScorerConfig(num_threads=bad)


def test_quantize_is_validated_and_cpu_only() -> None:
    from qr_integrations import QRScorer, ScorerConfig
    from qr_integrations.core.config import ConfigError
    from qr_integrations.core.models import DeviceError, load_model

    assert ScorerConfig.from_dict({"quantize": "int8"}).to_dict()["quantize"] == "int8"
    with pytest.raises(ConfigError, match="'quantize'.*'int8'"):
        ScorerConfig(quantize="int4")
    with pytest.raises(ValueError, match="quantize='fp8' is not supported"):
        load_model(device="cpu", quantize="fp8")
    with pytest.raises(DeviceError, match="CPU only"):
        QRScorer(quantize="int8", device="meta")
