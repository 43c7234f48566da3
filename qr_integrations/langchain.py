"""LangChain document compressor: re-rank or trim retrieved documents with QRHead scores.

Example:
    >>> from langchain_core.documents import Document
    >>> from qr_integrations.langchain import QRHeadDocumentCompressor
    >>> docs = [Document(page_content=t) for t in ["Paris is in France.", "Bananas are rich in potassium."]]
    >>> best = QRHeadDocumentCompressor(top_n=1, fusion="none").compress_documents(docs, "Which fruit has potassium?")
    >>> best[0].page_content
    'Bananas are rich in potassium.'

``fusion="none"`` ranks by QRHead alone; the default (``"weighted"``) mixes QRHead's scores with the incoming
order, or with the retriever's scores when ``retriever_score_key`` names the metadata key that holds them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

try:
    from langchain_core.callbacks import AsyncCallbackManager, CallbackManager, Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
    from langchain_core.runnables import RunnableConfig, RunnableSerializable
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'QRHeadDocumentCompressor needs langchain-core: pip install "qr-integrations[langchain]"'
    ) from exc

from ._adapter import Field, QRHeadSettings  # pydantic's Field: langchain-core's own pydantic

__all__ = ["QRHeadDocumentCompressor"]


class QRHeadDocumentCompressor(
    QRHeadSettings, BaseDocumentCompressor, RunnableSerializable[Mapping[str, Any], list[Document]]
):
    """Re-rank retrieved documents by QRHead relevance and keep the best, by count, score and token budget.

    One decoder LLM reads the query and all documents in one prompt; the attention of its query-focused
    retrieval heads scores each document. Returns new :class:`Document` objects (the inputs are not
    touched) with ``metadata["relevance_score"]`` set to a float and all other metadata kept. The model
    is loaded lazily on first use and shared with every scorer or adapter of the same ``model``,
    ``device`` and ``dtype``.

    It is a document compressor (``ContextualCompressionRetriever``, ``DocumentCompressorPipeline``) and
    also a Runnable taking ``{"query": str, "documents": [Document, ...]}``, for LCEL chains.

    Example:
        >>> from langchain_core.documents import Document
        >>> docs = [Document(page_content=t, metadata={"source": i})
        ...         for i, t in enumerate(["Paris is in France.", "Bananas are rich in potassium.", "Cats purr."])]
        >>> kept = QRHeadDocumentCompressor(top_n=2).compress_documents(docs, "Which fruit has potassium?")
        >>> kept[0].metadata["source"], type(kept[0].metadata["relevance_score"])
        (1, <class 'float'>)

    Fields: ``model``, ``heads``, ``device``, ``dtype``, ``scorer_options`` (the scorer), and ``top_n``,
    ``score_threshold``, ``max_tokens``, ``keep_order`` (the selection), as in
    :class:`~qr_integrations.llama_index.QRHeadNodePostprocessor`. Unknown keywords are a ``TypeError``;
    scorer options may be given at the top level or in ``scorer_options``; ``scorer=QRScorer(...)`` uses
    that scorer.

    Callbacks: :meth:`compress_documents` (what ``ContextualCompressionRetriever`` and
    ``DocumentCompressorPipeline`` call) reports its own ``retriever`` run, named
    ``QRHeadDocumentCompressor``, under the caller's run; as a Runnable it is one run too.

    Retriever scores: documents carry none, so by default fusion reads the retriever's ranking from the
    incoming order. Where a retriever stores its score in the metadata (``retriever_score_key="score"``),
    fusion mixes with that score instead, as LlamaIndex's postprocessor does with node scores; each document
    must then hold a number under that key.
    """

    model_config = QRHeadSettings.model_config  # unknown fields forbidden (the framework's base would ignore them)

    retriever_score_key: str | None = Field(
        default=None,
        description="Metadata key holding each document's retriever score, fused with QRHead's; None: fuse with "
        "the incoming order (best first).",
    )

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Score ``documents`` against ``query`` and return the kept ones as new documents.

        ``callbacks`` (a handler list or a parent run's manager, as ``ContextualCompressionRetriever``
        passes) see this call as a ``retriever`` run of its own, with the kept documents at its end.

        Example:
            >>> QRHeadDocumentCompressor().compress_documents([], "anything")
            []
        """
        manager = CallbackManager.configure(callbacks, None, verbose=False)
        run = manager.on_retriever_start(None, query if isinstance(query, str) else repr(query), name=self.get_name())
        try:
            kept = self._compress(documents, query)
        except BaseException as exc:
            run.on_retriever_error(exc)
            raise
        run.on_retriever_end(kept)
        return kept

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`: the scorer runs in a worker thread, off the event loop."""
        manager = AsyncCallbackManager.configure(callbacks, None, verbose=False)
        run = await manager.on_retriever_start(
            None, query if isinstance(query, str) else repr(query), name=self.get_name()
        )
        try:
            kept = await asyncio.to_thread(self._compress, documents, query)
        except BaseException as exc:
            await run.on_retriever_error(exc)
            raise
        await run.on_retriever_end(kept)
        return kept

    def _compress(self, documents: Sequence[Document], query: str) -> list[Document]:
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"QRHeadDocumentCompressor needs a non-empty query string, got {query!r}")
        docs = list(documents)
        if not docs:
            return []
        picked = self.select(query, [d.page_content for d in docs], self._retriever_scores(docs))
        return [
            docs[i].model_copy(update={"metadata": {**docs[i].metadata, "relevance_score": score, "qrhead_score": qr}})
            for i, score, qr in picked
        ]

    def _retriever_scores(self, docs: list[Document]) -> list[float | None] | None:
        """Each document's ``metadata[retriever_score_key]`` (``None`` without a key: fuse with the order)."""
        key = self.retriever_score_key
        if key is None:
            return None
        scores: list[float | None] = []
        for i, d in enumerate(docs):
            value = d.metadata.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"document {i} has no number under metadata[{key!r}] (retriever_score_key), got "
                                 f"{value!r}; store the retriever's score there or set retriever_score_key=None")
            scores.append(float(value))
        return scores

    # ------------------------------------------------------------------ Runnable
    @staticmethod
    def _unpack(value: Mapping[str, Any]) -> tuple[list[Document], str]:
        if not isinstance(value, Mapping) or "query" not in value or "documents" not in value:
            raise TypeError(
                "as a Runnable, QRHeadDocumentCompressor takes {'query': str, 'documents': [Document, ...]}, "
                f"got {type(value).__name__}; e.g. {{'documents': retriever, 'query': RunnablePassthrough()}} | compressor"
            )
        return list(value["documents"]), value["query"]

    def invoke(
        self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        """Compress ``input["documents"]`` for ``input["query"]`` (an LCEL step)."""
        # the Runnable run is this call's one run: the work inside reports no second one
        return self._call_with_config(
            lambda value: self._compress(*self._unpack(value)), input, config, run_type="retriever"
        )

    async def ainvoke(
        self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`invoke`."""

        async def run(value: Mapping[str, Any]) -> list[Document]:
            return await asyncio.to_thread(self._compress, *self._unpack(value))

        return await self._acall_with_config(run, input, config, run_type="retriever")
