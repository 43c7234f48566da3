"""End to end with llama-index-core: a real in-memory index, real embeddings, the real embedded model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from adapter_support import PASSAGES, QUERIES, embed
from llama_index.core import VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from qr_integrations.llama_index import QRHeadNodePostprocessor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class MiniLMEmbedding(BaseEmbedding):
    """all-MiniLM-L6-v2 through sentence-transformers, as a LlamaIndex embedding."""

    def _get_query_embedding(self, query: str) -> list[float]:
        return embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return embed(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


class Recorder(BaseEventHandler):
    events: list[Any] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.events.append(event)


class LegacyRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        super().__init__([], [])
        self.starts: list[tuple[CBEventType, dict[str, Any]]] = []
        self.ends: list[tuple[CBEventType, dict[str, Any]]] = []

    def on_event_start(self, event_type, payload=None, event_id="", parent_id="", **kwargs):  # type: ignore[no-untyped-def]
        self.starts.append((event_type, payload or {}))
        return event_id

    def on_event_end(self, event_type, payload=None, event_id="", **kwargs):  # type: ignore[no-untyped-def]
        self.ends.append((event_type, payload or {}))

    def start_trace(self, trace_id=None):  # type: ignore[no-untyped-def]
        pass

    def end_trace(self, trace_id=None, trace_map=None):  # type: ignore[no-untyped-def]
        pass


@pytest.fixture(scope="module")
def retriever() -> Any:
    nodes = [TextNode(text=t, id_=f"p{i}", metadata={"source": f"passage-{i}"}) for i, t in enumerate(PASSAGES)]
    index = VectorStoreIndex(nodes, embed_model=MiniLMEmbedding(model_name="all-MiniLM-L6-v2"))
    return index.as_retriever(similarity_top_k=8)


def ids(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.node_id for n in nodes]


@pytest.fixture(scope="module")
def first_run(retriever: Any) -> tuple[list[NodeWithScore], list[NodeWithScore], list[Any], LegacyRecorder]:
    """One postprocessor run over the index's top 8, observed by both event systems."""
    query, _ = QUERIES[0]
    retrieved = retriever.retrieve(query)
    recorder = Recorder(events=[])
    legacy = LegacyRecorder()
    root = get_dispatcher()
    root.add_event_handler(recorder)
    try:
        pp = QRHeadNodePostprocessor(top_n=3, callback_manager=CallbackManager([legacy]))
        out = pp.postprocess_nodes(retrieved, query_str=query)
    finally:
        root.event_handlers.remove(recorder)
    return retrieved, out, recorder.events, legacy


def test_gold_node_comes_out_on_top(first_run) -> None:
    retrieved, out, _, _ = first_run
    assert len(retrieved) == 8 and len(out) == 3
    assert out[0].node.node_id == f"p{QUERIES[0][1]}"
    assert all(type(n.score) is float for n in out)
    assert [n.score for n in out] == sorted((n.score for n in out), reverse=True)
    # no retrieval_score unless asked; QRHead's own score beside the fused node score
    assert set(out[0].node.metadata) == {"source", "qrhead_score"}


def test_events_are_emitted(first_run) -> None:
    retrieved, out, events, legacy = first_run
    starts = [e for e in events if isinstance(e, ReRankStartEvent)]
    ends = [e for e in events if isinstance(e, ReRankEndEvent)]
    assert len(starts) == 1 and len(ends) == 1
    assert starts[0].top_n == 3 and starts[0].model_name == "smollm2-135m-instruct"
    assert ids(starts[0].nodes) == ids(retrieved) and ids(ends[0].nodes) == ids(out)
    assert [t for t, _ in legacy.starts] == [CBEventType.RERANKING]
    assert [t for t, _ in legacy.ends] == [CBEventType.RERANKING]


def test_async_gives_the_same_result(retriever: Any, first_run) -> None:
    retrieved, out, _, _ = first_run
    pp = QRHeadNodePostprocessor(top_n=3)
    aout = asyncio.run(pp.apostprocess_nodes(retrieved, query_str=QUERIES[0][0]))
    assert ids(aout) == ids(out)
    assert [n.score for n in aout] == pytest.approx([n.score for n in out], rel=1e-9)


def test_async_does_not_block_the_event_loop(first_run) -> None:
    retrieved, _, _, _ = first_run
    pp = QRHeadNodePostprocessor(top_n=3)

    async def main() -> int:
        ticks = 0
        task = asyncio.create_task(pp.apostprocess_nodes(retrieved, query_str=QUERIES[1][0]))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.01)
        await task
        return ticks

    assert asyncio.run(main()) >= 5  # the loop kept running while the model scored


def test_concurrent_calls_match_sequential_ones() -> None:
    picked = (1, 4, 5)  # short prompts: this test runs the model 16 times
    nodes = [NodeWithScore(node=TextNode(text=PASSAGES[i], id_=f"c{i}"), score=0.1 * i) for i in picked]
    queries = [q for q, _ in QUERIES]
    pp = QRHeadNodePostprocessor(top_n=2, keep_retrieval_score=True)
    sequential = [pp.postprocess_nodes(nodes, query_str=q) for q in queries]

    async def together() -> list[list[NodeWithScore]]:
        return await asyncio.gather(*(pp.apostprocess_nodes(nodes, query_str=q) for q in queries))

    concurrent = asyncio.run(together())
    assert [ids(r) for r in concurrent] == [ids(r) for r in sequential]
    for c, s in zip(concurrent, sequential, strict=True):
        assert [n.score for n in c] == pytest.approx([n.score for n in s], rel=1e-9)
    assert all(n.score == pytest.approx(0.1 * i) for i, n in zip(picked, nodes, strict=True))  # inputs kept
    assert all("retrieval_score" not in n.node.metadata for n in nodes)  # the kept nodes are copies
    kept = {n.node.node_id: n.node.metadata["retrieval_score"] for r in concurrent for n in r}
    assert kept == {f"c{i}": pytest.approx(0.1 * i) for i in picked if f"c{i}" in kept}


def test_serialisation_round_trip() -> None:
    pp = QRHeadNodePostprocessor(
        top_n=4, heads=[(3, 1), (5, 2)], max_tokens=300, keep_order=True, keep_retrieval_score=True,
        metadata_mode=MetadataMode.NONE, scorer_options={"max_context_tokens": 2048},
    )
    data = pp.to_dict()
    assert data["class_name"] == "QRHeadNodePostprocessor" and data["heads"] == "3-1,5-2"
    assert pp._scorer is None  # nothing loaded: the model is not part of the component's state
    back = QRHeadNodePostprocessor.from_dict(data)
    assert back.to_dict() == data
    assert QRHeadNodePostprocessor.from_json(pp.to_json()).to_dict() == data
    assert json.loads(pp.to_json())["metadata_mode"] == "none"
    assert back.scorer_config == pp.scorer_config


def test_missing_query_empty_nodes_and_bad_fields() -> None:
    pp = QRHeadNodePostprocessor()
    node = NodeWithScore(node=TextNode(text="Paris is in France."), score=1.0)
    with pytest.raises(ValueError, match="needs a query"):
        pp.postprocess_nodes([node])
    with pytest.raises(ValueError, match="needs a query"):
        pp.postprocess_nodes([node], query_bundle=QueryBundle(query_str="  "))
    assert pp.postprocess_nodes([], query_str="anything") == []
    with pytest.raises(ValueError, match="top_n"):
        QRHeadNodePostprocessor(top_n=0)
    with pytest.raises(ValueError, match="unknown scorer option"):
        QRHeadNodePostprocessor(scorer_options={"windows": 3})


def test_budget_order_threshold_and_metadata_mode(scorer) -> None:
    nodes = [
        NodeWithScore(node=TextNode(text=PASSAGES[i], metadata={"topic": t}), score=0.5)
        for i, t in ((0, "Paris"), (1, "fruit"), (5, "space"), (9, "birds"))
    ]
    query = "Which fruit is rich in potassium?"
    best = QRHeadNodePostprocessor(fusion="none").postprocess_nodes(nodes, query_str=query)  # QRHead's own scores
    assert len(best) == 4 and best[0].node.metadata["topic"] == "fruit"
    kept = QRHeadNodePostprocessor(keep_order=True, top_n=3).postprocess_nodes(nodes, query_str=query)
    order = [n.node.node_id for n in nodes]
    assert [order.index(n.node.node_id) for n in kept] == sorted(order.index(n.node.node_id) for n in kept)
    budget = scorer.count_tokens(nodes[1].node.get_content(metadata_mode=MetadataMode.NONE)) + 2
    small = QRHeadNodePostprocessor(max_tokens=budget, metadata_mode="none").postprocess_nodes(nodes, query_str=query)
    assert [n.node.metadata["topic"] for n in small] == ["fruit"]
    # the threshold is on QRHead's own score: the node score when there is no fusion
    alone = QRHeadNodePostprocessor(fusion="none").postprocess_nodes(nodes, query_str=query)
    cut = (alone[1].score + alone[2].score) / 2
    above = QRHeadNodePostprocessor(score_threshold=cut, fusion="none").postprocess_nodes(nodes, query_str=query)
    assert ids(above) == ids(alone[:2])
    fused = QRHeadNodePostprocessor(score_threshold=cut).postprocess_nodes(nodes, query_str=query)
    assert set(ids(fused)) == set(ids(alone[:2]))


def test_postprocessor_in_a_query_engine(retriever: Any) -> None:
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine

    # MockLLM echoes its prompt: the answer shows what the generator would have read
    engine = RetrieverQueryEngine.from_args(
        retriever, llm=MockLLM(), node_postprocessors=[QRHeadNodePostprocessor(top_n=2)]
    )
    response = engine.query(QUERIES[2][0])
    assert response.source_nodes[0].node.node_id == f"p{QUERIES[2][1]}"
    assert len(response.source_nodes) == 2
    assert PASSAGES[QUERIES[2][1]] in str(response)


def test_keep_retrieval_score_copies_the_kept_nodes() -> None:
    shared = [TextNode(text=PASSAGES[i], id_=f"k{i}", metadata={"source": i}) for i in (1, 5, 9)]
    nodes = [NodeWithScore(node=n, score=0.3 - 0.1 * j) for j, n in enumerate(shared)]
    out = QRHeadNodePostprocessor(top_n=2, keep_retrieval_score=True).postprocess_nodes(
        nodes, query_str="Which fruit is rich in potassium?"
    )
    by_id = {n.node_id: n for n in shared}
    for kept in out:
        original = by_id[kept.node.node_id]
        assert kept.node is not original and kept.node.get_content() == original.get_content()
        assert kept.node.metadata == {**original.metadata, "retrieval_score": pytest.approx(original_score(nodes, original)),
                                      "qrhead_score": pytest.approx(kept.node.metadata["qrhead_score"])}
        assert "retrieval_score" in kept.node.excluded_llm_metadata_keys
        assert "retrieval_score" in kept.node.excluded_embed_metadata_keys
        assert "retrieval_score" not in kept.node.get_content(metadata_mode=MetadataMode.LLM)
    # the retrieved (shared) nodes are not changed: metadata, excluded keys, what they embed
    assert [n.metadata for n in shared] == [{"source": i} for i in (1, 5, 9)]
    assert all(not n.excluded_llm_metadata_keys and not n.excluded_embed_metadata_keys for n in shared)
    plain = QRHeadNodePostprocessor(top_n=2, fusion="none").postprocess_nodes(nodes,
                                                                              query_str="Which fruit is rich in potassium?")
    assert all(p.node is by_id[p.node.node_id] for p in plain)  # no fusion, no option: the same node objects


def test_qrhead_score_is_kept_under_fusion() -> None:
    """Under fusion a node's score is the fused one; QRHead's own score is in ``metadata["qrhead_score"]`` (the
    key LangChain's compressor sets), out of the text an LLM or embedding sees, and the threshold's score."""
    shared = [TextNode(text=PASSAGES[i], id_=f"f{i}", metadata={"source": i}) for i in (9, 1, 5, 3)]
    nodes = [NodeWithScore(node=n, score=0.9 - 0.1 * j) for j, n in enumerate(shared)]
    query = "Which fruit is rich in potassium?"
    pp = QRHeadNodePostprocessor(top_n=3)
    out = pp.postprocess_nodes(nodes, query_str=query)
    qr = pp.scorer.score(query, [n.get_content(metadata_mode=MetadataMode.EMBED) for n in shared], layout=pp.layout)
    for kept in out:
        j = next(k for k, n in enumerate(shared) if n.node_id == kept.node.node_id)
        assert kept.node.metadata["qrhead_score"] == pytest.approx(qr[j], rel=1e-6)
        assert kept.score != pytest.approx(qr[j])  # the node score is the fused one
        assert "qrhead_score" not in kept.node.get_content(metadata_mode=MetadataMode.LLM)
        assert "qrhead_score" not in kept.node.get_content(metadata_mode=MetadataMode.EMBED)
    assert all("qrhead_score" not in n.metadata for n in shared)  # the retrieved nodes are not changed


def original_score(nodes: list[NodeWithScore], node: TextNode) -> float:
    return next(n.score for n in nodes if n.node is node)  # type: ignore[return-value]
