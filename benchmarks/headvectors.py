"""Per-head calibrated attention of one query, kept so that any head set can be scored later without a model.

A QRScorer pass over *all* heads costs the same as a pass over the union of any head sets (the union is
all heads when one of them is "all"). Keeping each head's calibrated per-token vector over the chunk spans
lets the benchmarks score all heads, the shipped QRHead set, and any set shipped later, from one pass per
query: the aggregation below repeats :meth:`QRScorer.score_head_sets` step for step (sum the heads, drop
low outliers per chunk, sum; a split chunk takes its best piece). ``check_against_scorer`` verifies it.

This reads the scorer's window iterator (``QRScorer._windows``), a private method: benchmarks only.
"""

from __future__ import annotations

import math
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

    def scores(self, head_set: Any, outlier_std: float | None = 2.0) -> list[float]:
        """Chunk scores under ``head_set`` (a HeadSet; "all" for every head), as the scorer computes them."""
        from qr_integrations.core.scorer import chunk_scores

        pos = {h: i for i, h in enumerate(self.heads)}
        rows = list(range(len(self.heads))) if head_set.is_all else [pos[tuple(h)] for h in head_set.heads]
        out = torch.full((self.n_chunks,), -math.inf, dtype=torch.float64)
        for owners, spans, mat in self.windows:
            summed = mat[rows].sum(dim=0, keepdim=True)
            s = chunk_scores(summed, spans, outlier_std)[0]
            for j, owner in enumerate(owners):
                out[owner] = torch.maximum(out[owner], s[j])
        return [float(x) for x in out.tolist()]


def all_head_vectors(scorer: Any, query: str, chunks: Sequence[Any]) -> HeadVectors:
    """One pass of ``scorer`` over every head; only the tokens inside chunk spans are kept."""
    from qr_integrations.core.heads import HeadSet

    all_heads = HeadSet.all()
    norm = scorer._normalize(chunks)
    order = scorer._head_plan(all_heads)[0]
    windows = []
    for window, vectors, enc in scorer._windows(query, norm, all_heads):
        spans, pieces, at = [], [], 0
        for s, e in enc.chunk_spans:
            pieces.append(vectors[:, s:e].float().cpu())
            spans.append((at, at + (e - s)))
            at += e - s
        windows.append(([u.owner for u in window], spans, torch.cat(pieces, dim=1).contiguous()))
    return HeadVectors(tuple(order), len(norm), windows)


def check_against_scorer(scorer: Any, query: str, chunks: Sequence[Any], head_sets: Sequence[Any]) -> float:
    """The largest absolute difference between these scores and ``score_head_sets`` (should be ~1e-6)."""
    from qr_integrations.core.heads import HeadSet

    hv = all_head_vectors(scorer, query, chunks)
    direct = scorer.score_head_sets(query, chunks, list(head_sets))
    diff = 0.0
    for spec, ref in zip(head_sets, direct, strict=True):
        mine = hv.scores(HeadSet.parse(spec), scorer.config.outlier_std)
        diff = max(diff, max(abs(a - b) for a, b in zip(mine, ref, strict=True)))
    return diff
