"""Aggregation: from per-head calibrated attention to chunk scores, rankings and trims.

:class:`HeadAttention` is the one public result of the forward passes: each head's calibrated attention
over every window's prefix, with the chunk spans and the chunk each span belongs to. ``QRScorer.score``,
``score_head_sets`` and ``head_scores``, prepared contexts and the head-detection benchmarks all derive
their numbers from it with the functions here:

* :func:`chunk_scores`: per chunk span, drop tokens below ``mean - k std`` of the span, sum the rest;
* :meth:`HeadAttention.chunk_scores`: rows of summed heads, pieces of a split chunk folded with ``max``,
  the layouts of ``"both"`` averaged;
* :func:`select_within_budget`: which chunks ``trim`` keeps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .heads import Head, HeadSet, HeadSpec
from .results import RankedChunk, RankedResults, TrimResult


def chunk_scores(vectors: torch.Tensor, spans: Sequence[tuple[int, int]], outlier_std: float | None) -> torch.Tensor:
    """Sum each chunk span of per-token scores after dropping low outliers.

    Args:
        vectors: ``(rows, tokens)`` calibrated attention, one row per head (or one summed row).
        spans: ``(start, end)`` token ranges, end exclusive.
        outlier_std: drop tokens below ``mean - outlier_std * std`` of the chunk (``None``: keep all).

    Returns:
        ``(rows, len(spans))`` float64 tensor.

    Example:
        >>> chunk_scores(torch.tensor([[1.0, 1.0, 1.0, -9.0, 2.0]]), [(0, 4), (4, 5)], 1.0).tolist()
        [[3.0, 2.0]]
    """
    out = torch.zeros(vectors.shape[0], len(spans), dtype=torch.float64)
    v = vectors.double().cpu()
    for j, (s, e) in enumerate(spans):
        x = v[:, s:e]
        if outlier_std is not None and x.shape[1] >= 2:
            thr = x.mean(dim=1, keepdim=True) - outlier_std * x.std(dim=1, keepdim=True)
            x = torch.where(x > thr, x, torch.zeros_like(x))
        out[:, j] = x.sum(dim=1)
    return out


@dataclass(frozen=True)
class HeadScores:
    """Per-head chunk scores of one query (what head detection ranks heads by).

    Attributes:
        heads: the ``(layer, head)`` of each row.
        scores: ``(len(heads), num_chunks)`` calibrated, outlier-filtered chunk scores.
        mass: ``(len(heads), num_chunks)`` calibrated attention mass per chunk without outlier filtering.
    """

    heads: tuple[Head, ...]
    scores: torch.Tensor
    mass: torch.Tensor


@dataclass(frozen=True)
class WindowAttention:
    """One window's calibrated attention.

    Attributes:
        owners: the input chunk of each span (a chunk cut into pieces owns several spans, in any window).
        spans: ``(start, end)`` token ranges of the chunk blocks in ``vectors``.
        vectors: ``(heads, tokens)`` calibrated attention over the window's prefix.
    """

    owners: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    vectors: torch.Tensor

    def compact(self) -> WindowAttention:
        """The same window keeping only the tokens inside chunk spans (float32, on the CPU): what a
        benchmark stores to score other head sets later without the model."""
        pieces, spans, at = [], [], 0
        for s, e in self.spans:
            pieces.append(self.vectors[:, s:e].float().cpu())
            spans.append((at, at + (e - s)))
            at += e - s
        vectors = torch.cat(pieces, dim=1).contiguous() if pieces else self.vectors[:, :0].float().cpu()
        return WindowAttention(self.owners, tuple(spans), vectors)


@dataclass(frozen=True)
class HeadAttention:
    """Per-head calibrated attention of one query over its chunks: the result every score derives from.

    Attributes:
        query: the query.
        heads: ``(layer, head)`` of each row of every window's ``vectors``.
        num_chunks: how many input chunks.
        layouts: per prompt order of the layout (one, or two for ``"both"``), its windows.

    Example:
        >>> from qr_integrations import QRScorer
        >>> att = QRScorer(heads="1-0,2-3").head_attention("Which fruit?", ["Paris.", "Bananas."])
        >>> att.heads, att.num_chunks
        (((1, 0), (2, 3)), 2)
        >>> len(att.scores())
        2
    """

    query: str
    heads: tuple[Head, ...]
    num_chunks: int
    layouts: tuple[tuple[WindowAttention, ...], ...]

    def rows_for(self, heads: HeadSpec) -> list[int]:
        """Row indices of ``heads`` (a head set or spec; ``"all"``: every row). Raises ``KeyError`` naming
        a head that was not captured."""
        hs = heads if isinstance(heads, HeadSet) else HeadSet.parse(heads)
        if hs.is_all:
            return list(range(len(self.heads)))
        position = {h: i for i, h in enumerate(self.heads)}
        wanted = [(int(h[0]), int(h[1])) for h in hs.heads or ()]
        missing = [h for h in wanted if h not in position]
        if missing:
            raise KeyError(f"heads {missing} were not captured; this result holds {len(self.heads)} heads")
        return [position[h] for h in wanted]

    def chunk_scores(
        self, rows: Sequence[Sequence[int]] | None = None, outlier_std: float | None = 2.0
    ) -> torch.Tensor:
        """``(len(rows), num_chunks)`` float64 chunk scores, in input order.

        Each row of ``rows`` sums those heads before outlier filtering; ``None`` scores every head on its
        own. Pieces of a split chunk are folded with ``max``; the two layouts of ``"both"`` are averaged.
        """
        passes = []
        for windows in self.layouts:
            out: torch.Tensor | None = None
            for w in windows:
                summed = w.vectors if rows is None else torch.stack([w.vectors[list(r)].sum(dim=0) for r in rows])
                scores = chunk_scores(summed, w.spans, outlier_std)
                if out is None:
                    out = torch.full((scores.shape[0], self.num_chunks), -math.inf, dtype=torch.float64)
                for j, owner in enumerate(w.owners):
                    out[:, owner] = torch.maximum(out[:, owner], scores[:, j])
            n_rows = len(self.heads) if rows is None else len(rows)
            passes.append(out if out is not None else torch.zeros(n_rows, self.num_chunks, dtype=torch.float64))
        if len(passes) == 1:
            return passes[0]
        return torch.stack(passes).mean(dim=0)

    def scores(self, heads: HeadSpec = "all", outlier_std: float | None = 2.0) -> list[float]:
        """One score per chunk from the sum of ``heads`` (every captured head by default)."""
        return [float(x) for x in self.chunk_scores([self.rows_for(heads)], outlier_std)[0].tolist()]

    def head_set_scores(self, head_sets: Sequence[HeadSpec], outlier_std: float | None = 2.0) -> list[list[float]]:
        """One score list per head set (each a subset of the captured heads)."""
        rows = [self.rows_for(h) for h in head_sets]
        if not rows:
            return []
        return [[float(x) for x in r] for r in self.chunk_scores(rows, outlier_std).tolist()]

    def head_scores(self, outlier_std: float | None = 2.0) -> HeadScores:
        """Every head's own chunk scores, with and without the outlier filter."""
        return HeadScores(self.heads, self.chunk_scores(None, outlier_std), self.chunk_scores(None, None))

    def compact(self) -> HeadAttention:
        """The same result keeping only tokens inside chunk spans (see :meth:`WindowAttention.compact`)."""
        return HeadAttention(self.query, self.heads, self.num_chunks,
                             tuple(tuple(w.compact() for w in ws) for ws in self.layouts))


def select_within_budget(
    scores: Sequence[float], counts: Sequence[int], max_tokens: int | None, top_n: int | None = None
) -> list[int]:
    """Indices that ``trim`` keeps: best first (ties by position), at most ``top_n``, and a chunk that
    would overflow ``max_tokens`` is skipped while smaller ones after it may still fit.

    Example:
        >>> select_within_budget([0.1, 0.9, 0.5], [10, 600, 500], max_tokens=1000)
        [1, 0]
    """
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    used = 0
    for i in order:
        if top_n is not None and len(kept) >= top_n:
            break
        if max_tokens is not None and used + counts[i] > max_tokens:
            continue
        kept.append(i)
        used += counts[i]
    return kept


def ranked(query: str, chunks: Sequence[tuple[str | None, str]], scores: Sequence[float],
           top_n: int | None = None) -> RankedResults:
    """Chunks best first (ties keep input order), optionally only the best ``top_n``."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if top_n is not None:
        order = order[:top_n]
    items = tuple(
        RankedChunk(index=i, score=scores[i], rank=r + 1, text=chunks[i][1], title=chunks[i][0])
        for r, i in enumerate(order)
    )
    return RankedResults(query=query, items=items)


def trimmed(query: str, texts: Sequence[str], scores: Sequence[float], counts: Sequence[int],
            max_tokens: int | None, top_n: int | None, keep_order: bool) -> TrimResult:
    """The :class:`TrimResult` for chunk ``texts`` with their scores and token counts."""
    kept = select_within_budget(scores, counts, max_tokens, top_n)
    if keep_order:
        kept.sort()
    return TrimResult(
        query=query,
        chunks=tuple(texts[i] for i in kept),
        indices=tuple(kept),
        scores=tuple(scores[i] for i in kept),
        token_counts=tuple(counts[i] for i in kept),
        text="\n\n".join(texts[i] for i in kept),
        num_input_chunks=len(texts),
        input_tokens=sum(counts),
        all_scores=tuple(scores),
        input_chunks=tuple(texts),
    )
