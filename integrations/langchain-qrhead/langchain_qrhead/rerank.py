"""``QRHeadRerank``: the QRHead document compressor of qr-integrations under LangChain's reranker naming."""

from __future__ import annotations

from qr_integrations.langchain import QRHeadDocumentCompressor


class QRHeadRerank(QRHeadDocumentCompressor):
    """Document compressor that re-ranks by the attention of a decoder LLM's query-focused retrieval heads.

    The same component as :class:`qr_integrations.langchain.QRHeadDocumentCompressor` (fields, defaults,
    callbacks, the LCEL Runnable input ``{"query": ..., "documents": [...]}``), with runs named
    ``QRHeadRerank``. It returns new documents with ``metadata["relevance_score"]`` (the score it ranked
    by) and ``metadata["qrhead_score"]`` (QRHead's own, before fusion with the incoming order).

    Example:
        >>> from langchain_core.documents import Document
        >>> docs = [Document(page_content=t) for t in ["Paris is in France.", "Bananas are rich in potassium."]]
        >>> best = QRHeadRerank(top_n=1, fusion="none").compress_documents(docs, "Which fruit has potassium?")
        >>> best[0].page_content
        'Bananas are rich in potassium.'
    """
