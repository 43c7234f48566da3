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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from .heads import Head, HeadSet, HeadSpec
from .results import RankedChunk, RankedResults, TrimResult

T = TypeVar("T")

#: The smallest null-query mass a chunk is divided by under ``calibration="divide"`` (a chunk the null query
#: does not attend to at all would otherwise divide by zero).
NULL_MASS_FLOOR = 1e-6

#: How the null query's attention corrects the query's (``ScorerConfig.calibration``).
CALIBRATIONS: tuple[str, ...] = ("subtract", "divide")


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
        null: ``(heads, tokens)`` the null query's attention over the same prefix (``None`` uncalibrated).
    """

    owners: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    vectors: torch.Tensor
    null: torch.Tensor | None = None

    def compact(self) -> WindowAttention:
        """The same window keeping only the tokens inside chunk spans (float32, on the CPU): what a
        benchmark stores to score other head sets later without the model."""
        def keep(m: torch.Tensor) -> torch.Tensor:
            pieces = [m[:, s:e].float().cpu() for s, e in self.spans]
            return torch.cat(pieces, dim=1).contiguous() if pieces else m[:, :0].float().cpu()

        spans, at = [], 0
        for s, e in self.spans:
            spans.append((at, at + (e - s)))
            at += e - s
        return WindowAttention(self.owners, tuple(spans), keep(self.vectors),
                               None if self.null is None else keep(self.null))

    def null_mass(self, rows: Sequence[Sequence[int]] | None) -> torch.Tensor:
        """``(rows, spans)`` attention mass the null query puts on each chunk span (``rows`` as in
        :meth:`HeadAttention.chunk_scores`): what ``calibration="divide"`` divides by."""
        if self.null is None:
            raise ValueError("calibration='divide' needs the null query's attention; set calibrate=True")
        null = self.null.double().cpu()
        summed = null if rows is None else torch.stack([null[list(r)].sum(dim=0) for r in rows])
        return torch.stack([summed[:, s:e].sum(dim=1) for s, e in self.spans], dim=1)


@dataclass(frozen=True)
class HeadAttention:
    """Per-head calibrated attention of one query over its chunks: the result every score derives from.

    Attributes:
        query: the query.
        heads: ``(layer, head)`` of each row of every window's ``vectors``.
        num_chunks: how many input chunks.
        layouts: per pass over the chunks, its windows. One pass per prompt order of the layout (two for
            ``"both"``); ``cross_window="overlap"`` adds a shifted pass per order. Passes are averaged.
        cross_window: how scores of different windows are made comparable (see
            :data:`~qr_integrations.core.windows.CROSS_WINDOW_STRATEGIES`): ``"window_z"`` standardises
            each window's chunk scores, ``"window_share"`` divides them by the window's positive mass,
            ``"per_token"`` divides each chunk's sum by its tokens; all only when a pass has more than one
            window. The other strategies score like ``"per_window"``
            here (they change the windows, or re-score survivors in the scorer).
        calibration: ``"subtract"`` (QRHead's: each chunk's score is its calibrated attention) or
            ``"divide"`` (that score over the null query's attention mass on the chunk, which depends on
            where the chunk is written far more than on what it says: a position-free lift).

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
    cross_window: str = "per_window"
    calibration: str = "subtract"

    @property
    def windows(self) -> int:
        """How many windows the chunks were read in: the most of any pass (1 for an input that fits one).

        Example:
            >>> from qr_integrations import QRScorer
            >>> QRScorer(heads="1-0").head_attention("Which fruit?", ["Paris.", "Bananas."]).windows
            1
        """
        return max((len(p) for p in self.layouts), default=1)

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
        own. Pieces of a split chunk are folded with ``max``; passes (the two layouts of ``"both"``, the
        shifted pass of ``"overlap"``) are averaged. A pass of several windows is normalised per window
        under ``cross_window`` ``"window_z"`` or ``"window_share"`` (:func:`normalize_window`).
        """
        passes = []
        for windows in self.layouts:
            out: torch.Tensor | None = None
            for w in windows:
                summed = w.vectors if rows is None else torch.stack([w.vectors[list(r)].sum(dim=0) for r in rows])
                scores = chunk_scores(summed, w.spans, outlier_std)
                if self.calibration == "divide":
                    scores = scores / w.null_mass(rows).clamp(min=NULL_MASS_FLOOR)
                if len(windows) > 1:
                    scores = normalize_window(scores, w.owners, self.cross_window, w.spans)
                if out is None:
                    out = torch.full((scores.shape[0], self.num_chunks), -math.inf, dtype=torch.float64)
                for j, owner in enumerate(w.owners):
                    out[:, owner] = torch.maximum(out[:, owner], scores[:, j])
            n_rows = len(self.heads) if rows is None else len(rows)
            passes.append(out if out is not None else torch.zeros(n_rows, self.num_chunks, dtype=torch.float64))
        if len(passes) == 1:
            return passes[0]
        return torch.stack(passes).mean(dim=0)

    def chunk_tokens(self) -> list[int]:
        """Prompt tokens of each chunk's block(s) in the first pass (the length a score was summed over)."""
        counts = [0] * self.num_chunks
        for w in self.layouts[0] if self.layouts else ():
            for owner, (s, e) in zip(w.owners, w.spans, strict=True):
                counts[owner] += e - s
        return counts

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
                             tuple(tuple(w.compact() for w in ws) for ws in self.layouts), self.cross_window,
                             self.calibration)


def normalize_window(scores: torch.Tensor, owners: Sequence[int], strategy: str,
                     spans: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
    """One window's ``(rows, spans)`` chunk scores made comparable with other windows' under ``strategy``.

    ``"window_z"``: minus the window's mean, over its standard deviation, both taken over the window's
    chunks (pieces of one chunk folded with ``max`` first, so a long chunk does not count several times);
    ``"window_share"``: over the sum of the window's positive chunk scores (its calibrated mass);
    ``"per_token"``: each span's score over its token count (``spans`` needed). Any other strategy returns
    ``scores`` unchanged.

    Example:
        >>> normalize_window(torch.tensor([[1.0, 3.0]], dtype=torch.float64), [0, 1], "window_share").tolist()
        [[0.25, 0.75]]
    """
    if strategy == "per_token" and spans is not None:
        lengths = torch.tensor([max(e - s, 1) for s, e in spans], dtype=scores.dtype)
        return scores / lengths
    if strategy not in ("window_z", "window_share") or scores.shape[1] == 0:
        return scores
    per_owner: dict[int, torch.Tensor] = {}
    for j, owner in enumerate(owners):
        col = scores[:, j]
        per_owner[owner] = col if owner not in per_owner else torch.maximum(per_owner[owner], col)
    folded = torch.stack(list(per_owner.values()), dim=1)
    if strategy == "window_z":
        mean = folded.mean(dim=1, keepdim=True)
        std = folded.std(dim=1, keepdim=True) if folded.shape[1] > 1 else torch.ones_like(mean)
        return (scores - mean) / torch.where(std > 0, std, torch.ones_like(std))
    mass = folded.clamp(min=0).sum(dim=1, keepdim=True)
    return scores / torch.where(mass > 0, mass, torch.ones_like(mass))


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


def tournament_survivors(att: HeadAttention, scores: Sequence[float]) -> list[int] | None:
    """The chunks that go on to the next round of ``cross_window="tournament"``, in input order; ``None``
    when the first pass had one window (that window decided) or every chunk would survive.

    Each window of the first pass keeps its best ``ceil(n_w / (2 * windows))`` chunks (at least 2), where
    ``n_w`` is how many chunks it holds: the survivors fill about half a window, so the next round is
    usually the last.

    Example:
        >>> w = [WindowAttention((i, i + 1), ((0, 1), (1, 2)), torch.zeros(1, 2)) for i in (0, 2, 4)]
        >>> att = HeadAttention("q", ((0, 0),), 6, (tuple(w),), "tournament")
        >>> tournament_survivors(att, [0.1, 0.9, 0.5, 0.4, 0.0, 0.3])
        >>> w = [WindowAttention(tuple(range(i, i + 6)), tuple((j, j + 1) for j in range(6)), torch.zeros(1, 6))
        ...      for i in (0, 6)]
        >>> tournament_survivors(HeadAttention("q", ((0, 0),), 12, (tuple(w),)), [float(i % 6) for i in range(12)])
        [4, 5, 10, 11]
    """
    windows = att.layouts[0] if att.layouts else ()
    if len(windows) <= 1:
        return None
    kept: set[int] = set()
    for w in windows:
        owners = sorted(set(w.owners), key=lambda i: (-scores[i], i))
        kept.update(owners[: max(2, math.ceil(len(owners) / (2 * len(windows))))])
    if len(kept) >= att.num_chunks:
        return None
    return sorted(kept)


def tournament_merge(scores: Sequence[float], survivors: Sequence[int], final: Sequence[float]) -> list[float]:
    """Round scores merged into one list: survivors take their later-round ``final`` scores, and every
    eliminated chunk keeps its order among the eliminated but is shifted below the last survivor.

    Example:
        >>> [round(x, 4) for x in tournament_merge([0.9, 0.2, 0.5], [0, 2], [0.1, 0.3])]
        [0.1, 0.0997, 0.3]
    """
    out = [float(x) for x in scores]
    if not survivors:
        return out
    for i, s in zip(survivors, final, strict=True):
        out[i] = float(s)
    kept = set(survivors)
    eliminated = [i for i in range(len(out)) if i not in kept]
    if eliminated:
        floor = min(float(s) for s in final)
        top = max(float(scores[i]) for i in eliminated)
        gap = 1e-3 * (max(abs(float(s)) for s in final) or 1.0)
        shift = top - floor + gap
        if shift > 0:
            for i in eliminated:
                out[i] = float(scores[i]) - shift
    return out


def final_scores(att: HeadAttention, chunks: Sequence[T], outlier_std: float | None,
                 rescore: Callable[[list[T]], HeadAttention]) -> list[float]:
    """``att``'s chunk scores under every captured head; under ``cross_window="tournament"`` the survivors
    of each round re-scored together (``rescore(sub_chunks)`` runs the next round) until one window decides.

    The one place the tournament rounds happen, for plain calls and prepared contexts alike.

    Example:
        >>> w = (WindowAttention((0, 1), ((0, 1), (1, 2)), torch.tensor([[0.2, 0.9]])),)
        >>> att = HeadAttention("q", ((0, 0),), 2, (w,))  # one window: no further round, rescore is not called
        >>> [round(x, 3) for x in final_scores(att, ["a", "b"], None, lambda sub: att)]
        [0.2, 0.9]
    """
    scores = att.scores("all", outlier_std)
    if att.cross_window != "tournament":
        return scores
    survivors = tournament_survivors(att, scores)
    if survivors is None:
        return scores
    sub = [chunks[i] for i in survivors]
    return tournament_merge(scores, survivors, final_scores(rescore(sub), sub, outlier_std, rescore))
