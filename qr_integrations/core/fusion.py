"""Fusing QRHead scores with the ranking of the retriever that produced the candidates.

A re-ranker sees the retriever's order (and, in LlamaIndex, its scores). Two standard ways to combine it
with the QRHead ranking, as pure functions over score lists aligned with the input:

* reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009): each ranking gives an item
  ``1 / (k + rank)``; we take a weighted mean of the two, so the fused score lies in ``(0, 1 / (k + 1)]``
  and the plain, unweighted RRF ranking is ``weight=0.5``. ``k = 60`` is the paper's constant.
* a weighted mix of min-max normalised scores: ``weight * qr + (1 - weight) * retriever``, each scaled to
  ``[0, 1]`` within the query; the fused score lies in ``[0, 1]``.

Without retriever scores (LangChain documents carry none; a LlamaIndex node may have ``score=None``) the
retriever's ranking is read from the input order: the first item is its best.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

FusionMethod = Literal["none", "rrf", "weighted"]
FUSION_METHODS: tuple[str, ...] = ("none", "rrf", "weighted")
RRF_K = 60


def check_method(method: object) -> str:
    """``method`` if it is a known fusion method, else a ``ValueError`` that lists them.

    Example:
        >>> check_method("weighted")
        'weighted'
    """
    if not isinstance(method, str) or method not in FUSION_METHODS:
        raise ValueError(f"fusion must be one of {list(FUSION_METHODS)}, got {method!r}")
    return method


def ranks(scores: Sequence[float]) -> list[int]:
    """1-based rank of each item when sorted by score, highest first; equal scores share the best rank.

    Example:
        >>> ranks([0.2, 0.9, 0.2, 0.1])
        [2, 1, 2, 4]
    """
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    out = [0] * len(scores)
    for r, i in enumerate(order):
        tied = r > 0 and scores[i] == scores[order[r - 1]]
        out[i] = out[order[r - 1]] if tied else r + 1
    return out


def order_scores(n: int) -> list[float]:
    """Scores that encode "the input is best first": ``1.0`` for the first of ``n`` items down to ``0.0``.

    Example:
        >>> order_scores(3)
        [1.0, 0.5, 0.0]
    """
    if n == 1:
        return [1.0]
    return [1.0 - i / (n - 1) for i in range(n)]


def minmax(scores: Sequence[float]) -> list[float]:
    """Scores scaled to ``[0, 1]`` within the list (all ``0.0`` when they are all equal).

    Example:
        >>> minmax([2.0, 4.0, 3.0])
        [0.0, 1.0, 0.5]
    """
    lo, hi = min(scores), max(scores)
    if hi <= lo:
        return [0.0] * len(scores)
    return [(float(s) - lo) / (hi - lo) for s in scores]


def _check(qr_scores: Sequence[float], other: Sequence[float], weight: float) -> None:
    if len(qr_scores) != len(other):
        raise ValueError(f"cannot fuse {len(qr_scores)} QRHead scores with {len(other)} retriever scores: align them")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight must be a number in [0, 1] (the share of QRHead), got {weight!r}")


def reciprocal_rank_fusion(
    qr_scores: Sequence[float], retriever_scores: Sequence[float], weight: float = 0.5, k: int = RRF_K
) -> list[float]:
    """Weighted reciprocal rank fusion: ``weight / (k + rank_qr) + (1 - weight) / (k + rank_retriever)``.

    Args:
        qr_scores: QRHead scores, aligned with the input.
        retriever_scores: the retriever's scores (or :func:`order_scores` for a best-first input).
        weight: share of the QRHead ranking, in ``[0, 1]`` (``0.5``: plain RRF).
        k: the RRF constant (larger flattens the head of each ranking).

    Example:
        QRHead ranks item 1 first, the retriever item 0; item 1 is second for the retriever and wins:

        >>> fused = reciprocal_rank_fusion([0.2, 0.9, 0.5], [3.0, 2.0, 1.0])
        >>> [round(x, 5) for x in fused], ranks(fused)
        ([0.01613, 0.01626, 0.016], [2, 1, 3])
    """
    _check(qr_scores, retriever_scores, weight)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"the RRF constant k must be an integer >= 0, got {k!r}")
    rq, rr = ranks(qr_scores), ranks(retriever_scores)
    return [weight / (k + a) + (1.0 - weight) / (k + b) for a, b in zip(rq, rr, strict=True)]


def weighted_fusion(qr_scores: Sequence[float], retriever_scores: Sequence[float], weight: float = 0.5) -> list[float]:
    """``weight * minmax(qr) + (1 - weight) * minmax(retriever)``: a mix of scores scaled within the query.

    Example:
        >>> weighted_fusion([0.0, 1.0, 2.0], [10.0, 5.0, 0.0], weight=0.75)
        [0.25, 0.5, 0.75]
    """
    _check(qr_scores, retriever_scores, weight)
    q, r = minmax(qr_scores), minmax(retriever_scores)
    return [weight * a + (1.0 - weight) * b for a, b in zip(q, r, strict=True)]


def fuse(
    qr_scores: Sequence[float],
    retriever_scores: Sequence[float | None] | None = None,
    method: str = "weighted",
    weight: float = 0.7,
    rrf_k: int = RRF_K,
) -> list[float]:
    """QRHead scores fused with the retriever's ranking by ``method`` (``"none"`` returns them unchanged).

    Args:
        qr_scores: QRHead scores aligned with the input (e.g. :meth:`QRScorer.score`).
        retriever_scores: the retriever's scores aligned with the input; ``None`` (or any ``None`` in it)
            reads the retriever's ranking from the input order, best first.
        method: ``"weighted"`` (the adapters' default), ``"rrf"`` or ``"none"``.
        weight: share of QRHead in ``[0, 1]`` (default ``0.7``, the adapters' default: measured in
            docs/results-reranking.md, "In a RAG chain: candidates in retriever order").
        rrf_k: the RRF constant.

    Returns:
        Plain floats aligned with the input; higher is better.

    Example:
        >>> from qr_integrations.core.fusion import fuse, ranks
        >>> qr = [0.02, 0.31, 0.30]                     # QRHead alone: item 1, then 2, then 0
        >>> ranks(fuse(qr))                              # input best first: 0.7 * QRHead + 0.3 * the order
        [3, 1, 2]
        >>> ranks(fuse(qr, method="rrf", weight=0.5))    # plain reciprocal rank fusion with the order
        [2, 1, 3]
        >>> ranks(fuse(qr, [0.9, 0.1, 0.8], method="weighted", weight=0.5))
        [2, 2, 1]
    """
    check_method(method)
    qr = [float(s) for s in qr_scores]
    if method == "none" or not qr:
        return qr
    if retriever_scores is None or any(s is None for s in retriever_scores):
        retriever = order_scores(len(qr))
    else:
        retriever = [float(s) for s in retriever_scores if s is not None]
    if method == "rrf":
        return reciprocal_rank_fusion(qr, retriever, weight, rrf_k)
    return weighted_fusion(qr, retriever, weight)
