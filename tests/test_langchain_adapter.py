"""End to end with langchain-core (and langchain-classic's retrievers): real embeddings, the real model."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from adapter_support import PASSAGES, QUERIES, embed
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from qr_integrations.langchain import QRHeadDocumentCompressor

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUERY, GOLD = QUERIES[1]


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 through sentence-transformers, as LangChain embeddings."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return embed([text])[0]


@pytest.fixture(scope="module")
def store() -> InMemoryVectorStore:
    docs = [Document(page_content=t, id=f"p{i}", metadata={"source": f"passage-{i}", "tags": ["demo"]})
            for i, t in enumerate(PASSAGES)]
    vs = InMemoryVectorStore(embedding=MiniLMEmbeddings())
    vs.add_documents(docs)
    return vs


@pytest.fixture(scope="module")
def retrieved(store: InMemoryVectorStore) -> list[Document]:
    return store.as_retriever(search_kwargs={"k": 8}).invoke(QUERY)


@pytest.fixture(scope="module")
def ranked(retrieved: list[Document]) -> tuple[list[Document], list[Document]]:
    """All retrieved documents re-ranked (no cut), and a deep copy of the inputs taken before."""
    before = copy.deepcopy(retrieved)
    return before, list(QRHeadDocumentCompressor().compress_documents(retrieved, QUERY))


def test_compressor_ranks_gold_first_and_keeps_inputs(retrieved, ranked) -> None:
    before, out = ranked
    assert retrieved == before  # inputs untouched
    assert all("relevance_score" not in d.metadata for d in retrieved)
    assert len(out) == len(retrieved) == 8
    assert out[0].id == f"p{GOLD}"
    assert all(type(d.metadata["relevance_score"]) is float for d in out)
    scores = [d.metadata["relevance_score"] for d in out]
    assert scores == sorted(scores, reverse=True)
    assert all(type(d.metadata["qrhead_score"]) is float for d in out)
    for d in out:  # new objects, every other metadata kept
        original = next(r for r in retrieved if r.id == d.id)
        assert d is not original and d.metadata is not original.metadata
        added = {"relevance_score", "qrhead_score"}
        assert {k: v for k, v in d.metadata.items() if k not in added} == original.metadata
        assert d.page_content == original.page_content


def test_threshold_and_budget(retrieved, ranked, scorer) -> None:
    _, out = ranked
    qr = sorted((d.metadata["qrhead_score"] for d in out), reverse=True)
    cut = (qr[2] + qr[3]) / 2  # the threshold is on QRHead's own score, whatever the fusion does to the order
    above = QRHeadDocumentCompressor(score_threshold=cut).compress_documents(retrieved, QUERY)
    assert [d.id for d in above] == [d.id for d in out if d.metadata["qrhead_score"] >= cut]
    assert len(above) == 3 and all(d.metadata["qrhead_score"] >= cut for d in above)
    budget = sum(scorer.count_tokens(d.page_content) for d in out[:2])
    fitted = QRHeadDocumentCompressor(max_tokens=budget, keep_order=True).compress_documents(retrieved, QUERY)
    assert sum(scorer.count_tokens(d.page_content) for d in fitted) <= budget
    assert {d.id for d in out[:2]} <= {d.id for d in fitted}
    positions = [[r.id for r in retrieved].index(d.id) for d in fitted]
    assert positions == sorted(positions)  # keep_order: retrieval order


def test_contextual_compression_retriever_and_pipeline(store, ranked) -> None:
    classic = pytest.importorskip("langchain_classic.retrievers")
    from langchain_classic.retrievers.document_compressors import DocumentCompressorPipeline

    compressor = QRHeadDocumentCompressor(top_n=3)
    base = store.as_retriever(search_kwargs={"k": 8})
    retriever = classic.ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)
    docs = retriever.invoke(QUERY)
    assert [d.id for d in docs] == [d.id for d in ranked[1][:3]]
    # QRHead scores are listwise (each document is read next to the others), so the second stage
    # re-scores the first stage's five documents among themselves
    pipeline = DocumentCompressorPipeline(transformers=[QRHeadDocumentCompressor(top_n=5), compressor])
    piped = classic.ContextualCompressionRetriever(base_compressor=pipeline, base_retriever=base).invoke(QUERY)
    assert len(piped) == 3 and piped[0].id == f"p{GOLD}"
    assert {d.id for d in piped} <= {d.id for d in ranked[1][:5]}


def test_lcel_chain_sync_and_async(store, ranked) -> None:
    retriever = store.as_retriever(search_kwargs={"k": 8})
    compressor = QRHeadDocumentCompressor(top_n=2)
    chain = (
        {"documents": retriever, "query": RunnablePassthrough()}
        | compressor
        | RunnableLambda(lambda docs: "\n\n".join(d.page_content for d in docs))
    )
    context = chain.invoke(QUERY)
    assert context.split("\n\n") == [d.page_content for d in ranked[1][:2]]
    assert asyncio.run(chain.ainvoke(QUERY)) == context
    with pytest.raises(TypeError, match="'query'"):
        compressor.invoke(QUERY)  # type: ignore[arg-type]


def test_async_compress_matches_sync(retrieved, ranked) -> None:
    out = asyncio.run(QRHeadDocumentCompressor().acompress_documents(retrieved, QUERY))
    assert [d.id for d in out] == [d.id for d in ranked[1]]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx(
        [d.metadata["relevance_score"] for d in ranked[1]], rel=1e-9
    )


def test_empty_and_bad_inputs() -> None:
    compressor = QRHeadDocumentCompressor()
    assert compressor.compress_documents([], "anything") == []
    with pytest.raises(ValueError, match="non-empty query"):
        compressor.compress_documents([Document(page_content="x")], " ")
    with pytest.raises(ValueError, match="max_tokens"):
        QRHeadDocumentCompressor(max_tokens=0)


def test_only_langchain_core_is_imported_by_the_adapter() -> None:
    import ast
    import inspect

    import qr_integrations.langchain as module

    tree = ast.parse(inspect.getsource(module))
    roots: set[Any] = {
        (node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0
    } | {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert roots <= {"__future__", "asyncio", "collections", "typing", "langchain_core"}


class RunRecorder(BaseCallbackHandler):
    """Records runs: (name, run_id, parent_run_id) at the start, a retriever run's documents at its end."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, Any, Any]] = []
        self.ends: dict[Any, list[Document]] = {}

    def on_retriever_start(self, serialized, query, *, run_id, parent_run_id=None, **kwargs):  # type: ignore[no-untyped-def]
        self.starts.append((kwargs.get("name") or "", run_id, parent_run_id))

    def on_retriever_end(self, documents, *, run_id, parent_run_id=None, **kwargs):  # type: ignore[no-untyped-def]
        self.ends[run_id] = list(documents)

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kwargs):  # type: ignore[no-untyped-def]
        self.starts.append((kwargs.get("name") or "", run_id, parent_run_id))  # a Runnable's run


def test_the_compressor_is_its_own_callback_run(store) -> None:
    classic = pytest.importorskip("langchain_classic.retrievers")
    base = store.as_retriever(search_kwargs={"k": 4})
    retriever = classic.ContextualCompressionRetriever(base_compressor=QRHeadDocumentCompressor(top_n=2),
                                                       base_retriever=base)
    recorder = RunRecorder()
    docs = retriever.invoke(QUERY, config={"callbacks": [recorder]})
    runs = {name: (run_id, parent) for name, run_id, parent in recorder.starts}
    assert "QRHeadDocumentCompressor" in runs, recorder.starts
    outer = next(run_id for name, run_id, parent in recorder.starts if parent is None)
    run_id, parent = runs["QRHeadDocumentCompressor"]
    assert parent == outer  # a child of the compression retriever's run
    assert [d.id for d in recorder.ends[run_id]] == [d.id for d in docs]
    # as a Runnable it is one run, not two
    recorder = RunRecorder()
    QRHeadDocumentCompressor(top_n=1).invoke({"query": QUERY, "documents": docs}, config={"callbacks": [recorder]})
    assert [name for name, _, _ in recorder.starts] == ["QRHeadDocumentCompressor"]
    # async, and an error ends the run as an error
    recorder = RunRecorder()
    asyncio.run(QRHeadDocumentCompressor(top_n=1).acompress_documents(docs, QUERY, callbacks=[recorder]))
    assert [name for name, _, _ in recorder.starts] == ["QRHeadDocumentCompressor"] and len(recorder.ends) == 1
    errors: list[BaseException] = []

    class ErrorRecorder(BaseCallbackHandler):
        def on_retriever_error(self, error, *, run_id, parent_run_id=None, **kwargs):  # type: ignore[no-untyped-def]
            errors.append(error)

    with pytest.raises(ValueError, match="non-empty query"):
        QRHeadDocumentCompressor().compress_documents(docs, " ", callbacks=[ErrorRecorder()])
    assert len(errors) == 1 and isinstance(errors[0], ValueError)


def test_retriever_scores_from_a_named_metadata_key(retrieved) -> None:
    """Documents carry no score, so fusion reads the retriever's order; with ``retriever_score_key`` it mixes
    with the scores the retriever left in the metadata, as LlamaIndex's postprocessor does with node scores."""
    from llama_index.core.schema import NodeWithScore, TextNode

    from qr_integrations.core.fusion import fuse
    from qr_integrations.llama_index import QRHeadNodePostprocessor

    # retriever scores that disagree with the order the documents come in
    scores = [0.2, 0.9, 0.1, 0.8, 0.3, 0.7, 0.4, 0.6]
    docs = [d.model_copy(update={"metadata": {**d.metadata, "score": s}}) for d, s in zip(retrieved, scores)]
    by_key = QRHeadDocumentCompressor(retriever_score_key="score").compress_documents(docs, QUERY)
    qr = {d.id: d.metadata["qrhead_score"] for d in by_key}
    fused = fuse([qr[d.id] for d in docs], scores)
    assert [d.metadata["relevance_score"] for d in by_key] == pytest.approx(sorted(fused, reverse=True), rel=1e-9)
    by_order = QRHeadDocumentCompressor().compress_documents(docs, QUERY)
    assert [d.metadata["relevance_score"] for d in by_order] != pytest.approx(sorted(fused, reverse=True))
    # the same candidates and scores as LlamaIndex nodes: the same fused ranking
    nodes = [NodeWithScore(node=TextNode(text=d.page_content, id_=d.id), score=s) for d, s in zip(docs, scores)]
    ll = QRHeadNodePostprocessor().postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in ll] == [d.id for d in by_key]
    with pytest.raises(ValueError, match=r"document 0 has no number under metadata\['rank_score'\]"):
        QRHeadDocumentCompressor(retriever_score_key="rank_score").compress_documents(docs, QUERY)
