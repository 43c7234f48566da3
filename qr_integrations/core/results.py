"""Small value objects returned by the scorer, with notebook rendering."""

from __future__ import annotations

import html
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_PREVIEW = 160


def _preview(text: str, n: int = _PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


def _bar(score: float, lo: float, hi: float) -> str:
    frac = 0.0 if hi <= lo else (score - lo) / (hi - lo)
    width = max(2, round(100 * frac))
    return (
        '<div style="background:#e8eef7;width:120px;height:10px;display:inline-block">'
        f'<div style="background:#3b6fb6;width:{width}%;height:10px"></div></div>'
    )


@dataclass(frozen=True)
class RankedChunk:
    """One scored chunk: its position in the input, score, rank (1 = best) and text."""

    index: int
    score: float
    rank: int
    text: str
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        out: dict[str, Any] = {"rank": self.rank, "index": self.index, "score": self.score, "text": self.text}
        if self.title is not None:
            out["title"] = self.title
        return out


@dataclass(frozen=True)
class RankedResults:
    """Chunks of one query, best first.

    Example:
        >>> r = RankedResults("q", (RankedChunk(1, 0.9, 1, "b"), RankedChunk(0, 0.1, 2, "a")))
        >>> r.indices, r.top_n(1)[0].text
        ([1, 0], 'b')
        >>> r.to_records()[0]
        {'rank': 1, 'index': 1, 'score': 0.9, 'text': 'b', 'title': None}
        >>> print(r)
        Query: q
          1. [#1]  +0.9000  b
          2. [#0]  +0.1000  a
    """

    query: str
    items: tuple[RankedChunk, ...]

    def __iter__(self) -> Iterator[RankedChunk]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> RankedChunk:
        return self.items[i]

    @property
    def indices(self) -> list[int]:
        """Input positions, best first."""
        return [it.index for it in self.items]

    @property
    def scores(self) -> list[float]:
        """Scores, best first."""
        return [it.score for it in self.items]

    def top_n(self, n: int) -> list[RankedChunk]:
        """The best ``n`` chunks (``top_n`` as everywhere else in the library)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        return list(self.items[:n])

    def top_k(self, k: int) -> list[RankedChunk]:
        """Deprecated alias of :meth:`top_n`."""
        warnings.warn("RankedResults.top_k is deprecated; use top_n", DeprecationWarning, stacklevel=2)
        return self.top_n(k)

    def to_list(self) -> list[dict[str, Any]]:
        """Plain-JSON form, best first (``title`` only where a chunk has one)."""
        return [it.to_dict() for it in self.items]

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per chunk, best first, every key present (``title`` may be ``None``): rows for a
        data frame, a CSV writer or a database."""
        return [
            {"rank": it.rank, "index": it.index, "score": it.score, "text": it.text, "title": it.title}
            for it in self.items
        ]

    def to_pandas(self) -> Any:
        """The records as a ``pandas.DataFrame`` (columns rank, index, score, text, title; pandas is optional).

        Raises:
            ImportError: pandas is not installed (``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("RankedResults.to_pandas needs pandas: pip install pandas") from exc
        return pd.DataFrame.from_records(self.to_records(), columns=["rank", "index", "score", "text", "title"])

    def __str__(self) -> str:
        lines = [f"Query: {_preview(self.query, 100)}"]
        if not self.items:
            lines.append("  (no chunks)")
        for it in self.items:
            text = _preview((it.title + ": " if it.title else "") + it.text, 100)
            lines.append(f"  {it.rank}. [#{it.index}]  {it.score:+.4f}  {text}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.items:
            return "<p><i>no chunks</i></p>"
        lo = min(self.scores)
        hi = max(self.scores)
        rows = "".join(
            f"<tr><td>{it.rank}</td><td>{it.index}</td><td>{it.score:.4f}</td><td>{_bar(it.score, lo, hi)}</td>"
            f"<td style='text-align:left'>{html.escape(_preview((it.title + ': ' if it.title else '') + it.text))}</td></tr>"
            for it in self.items
        )
        return (
            f"<p><b>Query:</b> {html.escape(self.query)}</p><table><thead><tr><th>rank</th><th>input #</th>"
            f"<th>score</th><th></th><th style='text-align:left'>chunk</th></tr></thead><tbody>{rows}</tbody></table>"
        )


@dataclass(frozen=True)
class TrimResult:
    """The chunks kept by :meth:`QRScorer.trim`, ready to feed a generator.

    Attributes:
        query: the query.
        chunks: kept chunk texts (in input order when ``keep_order``, else best first).
        indices: their positions in the input chunk list.
        scores: their scores.
        token_counts: their token counts (plain text, the scorer's tokenizer).
        text: the kept chunks joined by blank lines.
        num_input_chunks: how many chunks the input had.
        input_tokens: tokens of all input chunks together.
        all_scores: the score of every input chunk, in input order.
    """

    query: str
    chunks: tuple[str, ...]
    indices: tuple[int, ...]
    scores: tuple[float, ...]
    token_counts: tuple[int, ...]
    text: str
    num_input_chunks: int
    input_tokens: int
    all_scores: tuple[float, ...] = ()
    input_chunks: tuple[str, ...] = ()

    @property
    def kept_tokens(self) -> int:
        """Tokens of the kept chunks together."""
        return sum(self.token_counts)

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: the kept text, each kept chunk (input index, score, tokens, text) and the counts.

        Example:
            >>> t = TrimResult("q", ("b",), (1,), (0.9,), (1,), "b", 2, 2, (0.1, 0.9), ("a", "b"))
            >>> t.to_dict()["chunks"]
            [{'index': 1, 'score': 0.9, 'tokens': 1, 'text': 'b'}]
        """
        return {
            "query": self.query,
            "text": self.text,
            "chunks": [
                {"index": i, "score": s, "tokens": n, "text": t}
                for i, s, n, t in zip(self.indices, self.scores, self.token_counts, self.chunks, strict=True)
            ],
            "num_input_chunks": self.num_input_chunks,
            "input_tokens": self.input_tokens,
            "kept_tokens": self.kept_tokens,
            "all_scores": list(self.all_scores),
        }

    def _repr_html_(self) -> str:
        kept = set(self.indices)
        source = self.input_chunks or self.chunks
        lo = min(self.all_scores) if self.all_scores else 0.0
        hi = max(self.all_scores) if self.all_scores else 1.0
        rows = []
        for i, text in enumerate(source):
            idx = i if self.input_chunks else self.indices[i]
            score = self.all_scores[idx] if self.all_scores else self.scores[i]
            style = "background:#e6f4ea" if idx in kept else "color:#888"
            mark = "kept" if idx in kept else "dropped"
            rows.append(
                f"<tr style='{style}'><td>{idx}</td><td>{mark}</td><td>{score:.4f}</td><td>{_bar(score, lo, hi)}</td>"
                f"<td style='text-align:left'>{html.escape(_preview(text))}</td></tr>"
            )
        return (
            f"<p><b>Query:</b> {html.escape(self.query)}<br>kept {len(self.indices)} of {self.num_input_chunks} chunks, "
            f"{self.kept_tokens} of {self.input_tokens} tokens</p><table><thead><tr><th>#</th><th></th><th>score</th>"
            f"<th></th><th style='text-align:left'>chunk</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
