"""``QRHeadRerank``: the QRHead node postprocessor of qr-integrations under LlamaIndex's reranker naming."""

from __future__ import annotations

from qr_integrations.llama_index import QRHeadNodePostprocessor


class QRHeadRerank(QRHeadNodePostprocessor):
    """Re-rank retrieved nodes by the attention of a decoder LLM's query-focused retrieval heads (QRHead).

    The same component as :class:`qr_integrations.llama_index.QRHeadNodePostprocessor` (fields, defaults,
    events, async), serialised under its own name: ``to_dict()["class_name"] == "QRHeadRerank"``.

    Example:
        >>> from llama_index.core.schema import NodeWithScore, TextNode
        >>> nodes = [NodeWithScore(node=TextNode(text=t), score=0.5)
        ...          for t in ["Paris is in France.", "Bananas are rich in potassium."]]
        >>> best = QRHeadRerank(top_n=1).postprocess_nodes(nodes, query_str="Which fruit has potassium?")
        >>> best[0].node.get_content()
        'Bananas are rich in potassium.'
    """

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serialises this component under."""
        return "QRHeadRerank"
