"""Prompt layout and fusion with the retriever's ranking: the core on the real embedded model, both adapters,
and the pure fusion functions with worked examples."""

from __future__ import annotations

import math

import pytest

from qr_integrations import QRScorer, ScorerConfig
from qr_integrations.core.config import QRHEAD_SCORING, ConfigError
from qr_integrations.core.fusion import fuse, minmax, order_scores, ranks, reciprocal_rank_fusion, weighted_fusion
from qr_integrations.core.layout import layout_orders

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUERY = "Which fruit is rich in potassium?"
CHUNKS = [
    "Bananas are an excellent source of potassium and vitamin B6.",
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
    ("Mount Everest", "The highest mountain above sea level, on the border of Nepal and China."),
    "Honey bees communicate the location of flowers with a waggle dance.",
    {"title": "Saturn", "text": "The sixth planet from the Sun, with a prominent ring system."},
]


def close(a: list[float], b: list[float], tol: float = 1e-9) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=0, abs_tol=tol) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def layouts(scorer: QRScorer) -> dict[str, list[float]]:
    return {lay: scorer.score(QUERY, CHUNKS, layout=lay) for lay in ("input", "reversed", "both")}


# ---------------------------------------------------------------------------------------------- core


def test_layouts_stay_aligned_with_the_input(scorer: QRScorer, layouts: dict[str, list[float]]) -> None:
    # "reversed" writes the same prompt as handing the chunks over reversed: same scores, mapped back
    assert layouts["reversed"] == scorer.score(QUERY, CHUNKS[::-1], layout="input")[::-1]
    # any permutation of the input under "input" layout is the same prompt as the permuted list
    perm = [3, 0, 4, 2, 1]
    permuted = scorer.score(QUERY, [CHUNKS[i] for i in perm], layout="input")
    direct = scorer.score(QUERY, CHUNKS, layout="input")
    assert len(set(perm)) == len(CHUNKS)
    assert direct != layouts["reversed"]  # the layout does change the scores: this test can fail
    # the gold chunk (0) is first in every layout, aligned with where it sits in the input
    for lay, scores in layouts.items():
        assert max(range(5), key=scores.__getitem__) == 0, lay
    # chunk 0 sits at position 1 of the permuted list
    assert max(range(5), key=permuted.__getitem__) == perm.index(0)


def test_both_is_the_mean_of_the_two_single_layouts(layouts: dict[str, list[float]]) -> None:
    mean = [(a + b) / 2 for a, b in zip(layouts["input"], layouts["reversed"], strict=True)]
    assert close(layouts["both"], mean, 1e-12)


def test_config_layout_is_the_default_and_a_call_overrides_it(scorer: QRScorer, layouts) -> None:
    rev = QRScorer(device="cpu", **QRHEAD_SCORING, layout="reversed")
    assert rev.config.layout == "reversed"
    assert rev.score(QUERY, CHUNKS) == layouts["reversed"]
    assert rev.score(QUERY, CHUNKS, layout="input") == layouts["input"]
    assert scorer.rank(QUERY, CHUNKS, layout="reversed").scores == sorted(layouts["reversed"], reverse=True)
    trimmed = scorer.trim(QUERY, CHUNKS, top_n=2, layout="both")
    assert list(trimmed.all_scores) == layouts["both"]


def test_head_scores_follow_the_layout(scorer: QRScorer) -> None:
    hs = scorer.head_scores(QUERY, CHUNKS[:3], heads="3-1,12-4", layout="reversed")
    ref = scorer.head_scores(QUERY, CHUNKS[:3][::-1], heads="3-1,12-4", layout="input")
    assert hs.scores.tolist() == ref.scores.flip(1).tolist()


def test_layout_round_trips_and_bad_values_are_refused() -> None:
    cfg = ScorerConfig(layout="both")
    assert ScorerConfig.from_yaml(cfg.to_yaml()).layout == "both"
    with pytest.raises(ConfigError, match="layout"):
        ScorerConfig(layout="backwards")
    with pytest.raises(ValueError, match="layout must be one of"):
        QRScorer(device="cpu", **QRHEAD_SCORING).score(QUERY, CHUNKS, layout="sideways")


def test_layout_orders() -> None:
    assert layout_orders(0, "both") == [[], []]
    assert layout_orders(4, "reversed") == [[3, 2, 1, 0]]


# ---------------------------------------------------------------------------------------------- fusion


def test_ranks_share_ties_and_order_scores_fall_from_one() -> None:
    assert ranks([]) == []
    assert ranks([1.0, 1.0, 1.0]) == [1, 1, 1]
    assert ranks([0.5, 3.0, 0.5, -1.0]) == [2, 1, 2, 4]
    assert order_scores(1) == [1.0]
    assert order_scores(5) == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert minmax([7.0, 7.0]) == [0.0, 0.0]


def test_rrf_worked_example() -> None:
    # QRHead ranks c > a > b; the retriever a > b > c; k = 60, equal weights
    fused = reciprocal_rank_fusion([0.5, 0.1, 0.9], [3.0, 2.0, 1.0], weight=0.5, k=60)
    expected = [0.5 / 62 + 0.5 / 61, 0.5 / 63 + 0.5 / 62, 0.5 / 61 + 0.5 / 63]
    assert close(fused, expected, 1e-15)
    assert ranks(fused) == [1, 3, 2]
    # the weight moves the decision to either side
    assert ranks(reciprocal_rank_fusion([0.5, 0.1, 0.9], [3.0, 2.0, 1.0], weight=1.0)) == [2, 3, 1]
    assert ranks(reciprocal_rank_fusion([0.5, 0.1, 0.9], [3.0, 2.0, 1.0], weight=0.0)) == [1, 2, 3]


def test_weighted_worked_example() -> None:
    # minmax: QRHead [0, 1, 0.5], retriever [1, 0, 0.25]; 0.6 * qr + 0.4 * retriever
    fused = weighted_fusion([1.0, 3.0, 2.0], [10.0, 2.0, 4.0], weight=0.6)
    assert close(fused, [0.4, 0.6, 0.4], 1e-12)


def test_fuse_reads_the_input_order_without_retriever_scores() -> None:
    qr = [0.1, 0.2, 0.3, 0.4]
    assert fuse(qr, None, "rrf", 0.5) == reciprocal_rank_fusion(qr, [1.0, 0.75, 0.5, 0.25], 0.5)
    assert fuse(qr, [None, None, None, None], "weighted", 0.6) == weighted_fusion(qr, order_scores(4), 0.6)
    assert fuse(qr) == weighted_fusion(qr, order_scores(4), 0.7)  # the adapters' default
    assert fuse(qr, [4.0, 3.0, 2.0, 1.0], "none") == qr
    assert fuse([], None, "rrf") == []
    assert all(type(x) is float for x in fuse([1, 2], [2, 1], "weighted"))
    with pytest.raises(ValueError, match="align"):
        fuse(qr, [1.0], "rrf")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fuse(qr, None, "rrf", weight=1.5)
    with pytest.raises(ValueError, match="fusion must be one of"):
        fuse(qr, None, "borda")


# ---------------------------------------------------------------------------------------------- adapters


def test_compressor_defaults_are_reversed_layout_and_a_weighted_mix(scorer: QRScorer) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from qr_integrations.langchain import QRHeadDocumentCompressor

    texts = [c if isinstance(c, str) else (c[1] if isinstance(c, tuple) else c["text"]) for c in CHUNKS]
    docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(texts)]
    comp = QRHeadDocumentCompressor(scorer=scorer)
    assert (comp.layout, comp.fusion, comp.fusion_weight, comp.rrf_k) == ("reversed", "weighted", 0.7, 60)
    out = comp.compress_documents(docs, QUERY)
    qr = scorer.score(QUERY, texts, layout="reversed")
    fused = weighted_fusion(qr, order_scores(5), 0.7)  # documents carry no retriever score: the order stands in
    assert all(0.0 <= x <= 1.0 for x in fused)
    assert [d.metadata["i"] for d in out] == sorted(range(5), key=lambda i: (-fused[i], i))
    assert [d.metadata["relevance_score"] for d in out] == sorted(fused, reverse=True)
    assert [d.metadata["qrhead_score"] for d in out] == [qr[d.metadata["i"]] for d in out]
    rrf = QRHeadDocumentCompressor(scorer=scorer, fusion="rrf", rrf_k=10).compress_documents(docs, QUERY)
    assert [d.metadata["relevance_score"] for d in rrf] == sorted(fuse(qr, None, "rrf", 0.7, 10), reverse=True)
    plain = QRHeadDocumentCompressor(scorer=scorer, fusion="none", layout="input").compress_documents(docs, QUERY)
    assert [d.metadata["relevance_score"] for d in plain] == scorer.rank(QUERY, texts, layout="input").scores


def test_postprocessor_fuses_with_the_retriever_scores(scorer: QRScorer) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore, TextNode

    from qr_integrations.llama_index import QRHeadNodePostprocessor

    texts = ["Paris is in France.", "Bananas are rich in potassium.", "Cats purr.", "Potassium is a metal."]
    retriever = [0.9, 0.2, 0.5, 0.7]
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=s) for i, (t, s) in enumerate(zip(texts, retriever))]
    pp = QRHeadNodePostprocessor(scorer=scorer, fusion="weighted", fusion_weight=0.7)
    out = pp.postprocess_nodes(nodes, query_str=QUERY)
    fused = weighted_fusion(scorer.score(QUERY, texts, layout="reversed"), retriever, 0.7)
    assert [int(n.node.id_) for n in out] == sorted(range(4), key=lambda i: (-fused[i], i))
    assert close([n.score for n in out], sorted(fused, reverse=True), 1e-12)
    again = QRHeadNodePostprocessor.from_dict(pp.to_dict())
    assert (again.fusion, again.fusion_weight, again.layout) == ("weighted", 0.7, "reversed")


def test_an_adapter_uses_the_scorer_it_is_given() -> None:
    pytest.importorskip("langchain_core")
    from qr_integrations.langchain import QRHeadDocumentCompressor

    given = QRScorer(heads="all", device="cpu", max_context_tokens=2048, **QRHEAD_SCORING)
    comp = QRHeadDocumentCompressor(scorer=given)
    assert comp.scorer is given
    assert comp.heads == "all" and comp.scorer_options == {"max_context_tokens": 2048}
    assert QRHeadDocumentCompressor.from_config(comp.scorer_config).scorer_options == {"max_context_tokens": 2048}
    # a scorer at the library's defaults keeps its position corrections through the adapter's config
    corrected = QRHeadDocumentCompressor(scorer=QRScorer(heads="all", device="cpu"))
    assert corrected.scorer_options == {"calibration": "divide", "orders": 2, "prior": "dense"}
    assert QRHeadDocumentCompressor.from_config(corrected.scorer_config).scorer_config == corrected.scorer.config
    with pytest.raises(TypeError, match="either scorer="):
        QRHeadDocumentCompressor(scorer=given, heads="3-1")
    with pytest.raises(TypeError, match="must be a QRScorer"):
        QRHeadDocumentCompressor(scorer="smollm2")


def test_adapter_layout_is_its_own_field() -> None:
    pytest.importorskip("langchain_core")
    from qr_integrations.langchain import QRHeadDocumentCompressor

    with pytest.raises(ValueError, match="set them as fields of the component"):
        QRHeadDocumentCompressor(scorer_options={"layout": "input"})
    assert QRHeadDocumentCompressor.from_config({"layout": "both", "fusion": "none"}).layout == "both"
    assert QRHeadDocumentCompressor.from_config({"top_n": 2}).layout == "reversed"
    with pytest.raises(ValueError, match="fusion must be one of"):
        QRHeadDocumentCompressor(fusion="borda")


def test_threshold_applies_to_the_qrhead_score(scorer: QRScorer) -> None:
    pytest.importorskip("langchain_core")
    from qr_integrations.langchain import QRHeadDocumentCompressor

    texts = ["Paris is in France.", "Bananas are rich in potassium.", "Cats purr."]
    qr = scorer.score(QUERY, texts, layout="reversed")
    cut = sorted(qr)[1]  # keeps the two best by QRHead, whatever fusion does to the order
    picked = QRHeadDocumentCompressor(scorer=scorer, score_threshold=cut).select(QUERY, texts)
    assert sorted(i for i, _, _ in picked) == sorted(i for i in range(3) if qr[i] >= cut)
