"""Per-head calibrated attention of one query, kept so that any head set can be scored later without a model.

A QRScorer pass over *all* heads costs the same as a pass over the union of any head sets (the union is
all heads when one of them is "all"). Keeping each head's calibrated per-token vector over the chunk spans
lets the benchmarks score all heads, the shipped QRHead set, and any set shipped later, from one pass per
query. The vectors come from the scorer's public result, :meth:`QRScorer.head_attention` over every head
(chunks in input order), kept compact (:meth:`HeadAttention.compact`: only tokens inside chunk spans);
the scores are :meth:`HeadAttention.scores` of that result, the same aggregation as
:meth:`QRScorer.score_head_sets`. ``check_against_scorer`` verifies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class HeadVectors:
    heads: tuple[tuple[int, int], ...]  # row order of every window's matrix
    n_chunks: int
    windows: list[tuple[list[int], list[tuple[int, int]], torch.Tensor]]  # (owners, spans, (heads, tokens))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"heads": self.heads, "n_chunks": self.n_chunks, "windows": self.windows}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> HeadVectors:
        d = torch.load(path, weights_only=False)
        return cls(tuple(tuple(h) for h in d["heads"]), int(d["n_chunks"]), d["windows"])

    def attention(self) -> Any:
        """The stored vectors as a :class:`~qr_integrations.core.aggregate.HeadAttention` (input layout)."""
        from qr_integrations.core.aggregate import HeadAttention, WindowAttention

        windows = tuple(WindowAttention(tuple(o), tuple(map(tuple, sp)), m) for o, sp, m in self.windows)
        return HeadAttention("", self.heads, self.n_chunks, (windows,))

    def scores(self, head_set: Any, outlier_std: float | None = 2.0) -> list[float]:
        """Chunk scores under ``head_set`` (a HeadSet; "all" for every head), as the scorer computes them."""
        return self.attention().scores(head_set, outlier_std)


def all_head_vectors(scorer: Any, query: str, chunks: Sequence[Any]) -> HeadVectors:
    """One pass of ``scorer`` over every head; only the tokens inside chunk spans are kept."""
    att = scorer.head_attention(query, chunks, "all", layout="input").compact()
    windows = [(list(w.owners), list(w.spans), w.vectors) for w in att.layouts[0]]
    return HeadVectors(att.heads, att.num_chunks, windows)


def check_against_scorer(scorer: Any, query: str, chunks: Sequence[Any], head_sets: Sequence[Any]) -> float:
    """The largest absolute difference between these scores and ``score_head_sets`` (should be ~1e-6)."""
    from qr_integrations.core.heads import HeadSet

    hv = all_head_vectors(scorer, query, chunks)
    direct = scorer.score_head_sets(query, chunks, list(head_sets), layout="input")
    diff = 0.0
    for spec, ref in zip(head_sets, direct, strict=True):
        mine = hv.scores(HeadSet.parse(spec), scorer.config.outlier_std)
        diff = max(diff, max(abs(a - b) for a, b in zip(mine, ref, strict=True)))
    return diff
