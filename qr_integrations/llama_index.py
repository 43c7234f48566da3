"""LlamaIndex node postprocessor: re-rank or trim retrieved nodes with QRHead scores.

Example:
    >>> from llama_index.core.schema import NodeWithScore, TextNode
    >>> from qr_integrations.llama_index import QRHeadNodePostprocessor
    >>> nodes = [NodeWithScore(node=TextNode(text=t), score=0.5)
    ...          for t in ["Paris is in France.", "Bananas are rich in potassium."]]
    >>> best = QRHeadNodePostprocessor(top_n=1).postprocess_nodes(nodes, query_str="Which fruit has potassium?")
    >>> best[0].node.get_content()
    'Bananas are rich in potassium.'
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from llama_index.core.bridge.pydantic import Field
    from llama_index.core.callbacks import CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'QRHeadNodePostprocessor needs llama-index-core: pip install "qr-integrations[llama-index]"'
    ) from exc

from ._adapter import QRHeadSettings, StrictBool

__all__ = ["QRHeadNodePostprocessor"]

dispatcher = get_dispatcher(__name__)


class QRHeadNodePostprocessor(QRHeadSettings, BaseNodePostprocessor):
    """Re-rank retrieved nodes by QRHead relevance and keep the best, by count, score and token budget.

    One decoder LLM reads the query and all nodes in one prompt; the attention of its query-focused
    retrieval heads scores each node. The model is loaded lazily on first use and shared with every
    other scorer or adapter of the same ``model``, ``device`` and ``dtype``.

    Example:
        >>> from llama_index.core.schema import NodeWithScore, TextNode
        >>> nodes = [NodeWithScore(node=TextNode(text=t), score=0.5)
        ...          for t in ["Paris is in France.", "Bananas are rich in potassium.", "Cats purr."]]
        >>> pp = QRHeadNodePostprocessor(top_n=2, keep_retrieval_score=True)
        >>> kept = pp.postprocess_nodes(nodes, query_str="Which fruit has potassium?")
        >>> kept[0].node.get_content(), type(kept[0].score), kept[0].node.metadata["retrieval_score"]
        ('Bananas are rich in potassium.', <class 'float'>, 0.5)
        >>> "retrieval_score" in nodes[1].node.metadata  # the retrieved node itself is not changed
        False

    Fields (besides ``model``, ``heads``, ``device``, ``dtype``, ``scorer_options``, ``top_n``,
    ``score_threshold``, ``max_tokens`` and ``keep_order``, shared with the LangChain compressor):
        keep_retrieval_score: return each kept node as a copy (same id, text and relationships) whose
            ``metadata["retrieval_score"]`` holds its incoming score; the key is also excluded from the
            copy's embed and LLM metadata, so it never reaches a prompt. The retrieved nodes are not changed.
        metadata_mode: which of a node's metadata is written, as ``key: value`` lines, into the text QRHead
            reads and scores (``node.get_content(metadata_mode)``; default ``EMBED``: what the node embeds,
            titles and sources included). ``"none"`` scores the text alone; the token budget counts what is
            scored.

    Under fusion (the default) a node's ``score`` is the fused score, so each kept node is returned as a copy
    whose ``metadata["qrhead_score"]`` holds QRHead's own score (the key LangChain's compressor sets too),
    excluded from the copy's embed and LLM text. With ``fusion="none"`` the score is QRHead's and the
    retrieved nodes are returned as they are.

    Unknown keywords are a ``TypeError`` (``top_n``, not ``topn``); scorer options may be given at the top
    level (``max_context_tokens=4096``) or in ``scorer_options``. A model path that does not exist, a device
    this machine lacks and heads outside the model's shape (when known) fail at construction.

    Events: ``ReRankStartEvent``/``ReRankEndEvent`` through the instrumentation dispatcher, and the legacy
    ``CBEventType.RERANKING`` callback event. Async: :meth:`apostprocess_nodes` runs the scorer in a worker
    thread; forward passes on one model are serialised by the model's lock, so concurrent calls are safe.
    """

    model_config = QRHeadSettings.model_config  # unknown fields forbidden (the framework's base would ignore them)

    keep_retrieval_score: StrictBool = Field(
        default=False,
        description="Return kept nodes as copies with the incoming score in metadata['retrieval_score'].",
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED, description="Metadata mode of node.get_content() for the scored text."
    )

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serialises this component under."""
        return "QRHeadNodePostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None or not query_bundle.query_str.strip():
            raise ValueError(
                "QRHeadNodePostprocessor needs a query: call postprocess_nodes(nodes, query_str=...) or pass "
                "query_bundle=QueryBundle(...); inside a query engine the query is passed for you"
            )
        if not nodes:
            return []
        query = query_bundle.query_str
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=self.top_n or len(nodes), model_name=self.model_name
            )
        )
        payload: dict[str, Any] = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model_name,
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self.top_n or len(nodes),
        }
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            texts = [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]
            picked = self.select(query, texts, [n.score for n in nodes])
            out = [NodeWithScore(node=self._annotated(nodes[i], qr), score=score) for i, score, qr in picked]
            event.on_end(payload={EventPayload.NODES: out})
        dispatcher.event(ReRankEndEvent(nodes=out))
        return out

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        # The forward passes are CPU/GPU bound: run them in a worker thread, never on the event loop.
        return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)

    def _annotated(self, item: NodeWithScore, qr_score: float) -> Any:
        """The node to return for ``item``: the retrieved node itself, or a copy carrying ``qrhead_score``
        (under fusion, where the node's score is the fused one) and ``retrieval_score`` (when asked)."""
        extra: dict[str, float | None] = {}
        if self.fusion != "none":
            extra["qrhead_score"] = float(qr_score)
        if self.keep_retrieval_score:
            extra["retrieval_score"] = None if item.score is None else float(item.score)
        return self._with_metadata(item.node, extra) if extra else item.node

    @staticmethod
    def _with_metadata(node: Any, extra: dict[str, float | None]) -> Any:
        """A shallow copy of ``node`` (same id, text, relationships) with its own metadata dict holding ``extra``,
        whose keys are excluded from its embed and LLM text; ``node`` is not changed."""
        excluded = {
            key: [*getattr(node, key), *(k for k in extra if k not in getattr(node, key))]
            for key in ("excluded_embed_metadata_keys", "excluded_llm_metadata_keys")
        }
        return node.model_copy(update={"metadata": {**node.metadata, **extra}, **excluded})
