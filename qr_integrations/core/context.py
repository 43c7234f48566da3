"""A prepared context: chunks encoded once, any number of questions at the cost of each question's tokens.

QRHead's prompt puts the chunks first and the question last, so everything computed over the chunks is
the same for every question: each window's prefix KV cache, the null-query calibration and the rows of
the instruction that every query span starts with. :meth:`QRScorer.context` computes them once;
:class:`PreparedContext` then runs only each question's own tokens over the cached prefixes.

Windows are planned for any question up to ``query_tokens`` tokens (the same reservation plain calls
make), so a prepared context scores exactly the windows that ``QRScorer.score`` would.

One exception to "prepared": under ``shortlist`` (on by default), an input past one window with more chunks
than the shortlist keeps is cut per question to the prior's best chunks, which only the question decides.
Such a context prepares nothing and answers each question as ``QRScorer.score`` does (``ctx.shortlisted``);
prepare it with ``shortlist=None`` to hold every window and pay only each question's tokens.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

import torch

from .aggregate import HeadAttention, ranked, trimmed
from .engine import ContextClosedError, HeadPlan
from .pipeline import Norm, Pipeline, chunk_texts, release
from .prompt import spread_copies
from .results import RankedResults, TrimResult
from .validate import check_positive, check_query


class QueryTooLongError(ValueError):
    """A question needs more tokens than the prepared context's windows kept room for."""


KV_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_kv_dtype(kv_dtype: str | None, model_dtype: torch.dtype) -> torch.dtype | None:
    """The storage dtype of a context's KV cache; ``None`` when it stays in the model's dtype (exact).

    Example:
        >>> resolve_kv_dtype("float16", torch.float32), resolve_kv_dtype(None, torch.float32)
        (torch.float16, None)
    """
    if kv_dtype is None:
        return None
    if kv_dtype not in KV_DTYPES:
        raise ValueError(f"kv_dtype={kv_dtype!r} is not supported; use None (the model's dtype, exact), "
                         f"'float16' or 'bfloat16'")
    dt = KV_DTYPES[kv_dtype]
    return None if dt == model_dtype else dt


class PreparedContext:
    """Chunks encoded once for many questions; build one with :meth:`QRScorer.context`.

    ``score``, ``rank`` and ``trim`` take the question only and equal the scorer's methods over the same
    chunks. Thread-safe: questions from several threads are answered one at a time (one lock per context).

    Attributes:
        chunks: the normalized ``(title, text)`` chunks, in input order.
        read: the chunks the model read: each distinct chunk once under ``dedupe`` (the default), else
            ``chunks``; :meth:`head_attention` is over these, scores are per input chunk.
        shortlisted: whether questions are answered by a shortlist (``shortlist``, on by default, and an
            input of more chunks than it keeps, or of more than one under ``shortlist_window``, that needs
            more than one window). A shortlist is picked by
            the question, so nothing is prepared ahead: each question costs what ``scorer.score`` costs
            (one window). To prepare every window instead, use a scorer with ``shortlist=None``.
        heads: ``(layer, head)`` of the heads read.
        layout: the layout the prefixes were prepared in.
        query_tokens: question tokens each window kept room for.

    Example:
        >>> from qr_integrations import QRScorer
        >>> scorer = QRScorer()
        >>> ctx = scorer.context(["The Eiffel Tower is in Paris.", "Bananas are rich in potassium."])
        >>> ctx.rank("Which fruit has potassium?").indices
        [1, 0]
        >>> ctx.bytes_per_token > 0 and ctx.nbytes > 0
        True
        >>> ctx.close()
    """

    def __init__(
        self,
        pipeline: Pipeline,
        chunks: list[Norm],
        plan: HeadPlan,
        layout: str,
        query_tokens: int,
        show_progress: bool | None = None,
        kv_dtype: str | None = None,
    ) -> None:
        self._kv_dtype = resolve_kv_dtype(kv_dtype, pipeline.loaded.dtype)
        self.pipeline = pipeline
        self.chunks = list(chunks)
        self.plan = plan
        self.heads = plan.heads
        self.layout = layout
        self.query_tokens = query_tokens
        self._lock = threading.RLock()
        self._counts: list[int] | None = None
        self._texts = chunk_texts(self.chunks)
        self._closed = False
        self.read, self._index = pipeline.read_chunks(self.chunks)
        self._show_progress = show_progress
        # a shortlist is picked by the question: nothing of such an input can be prepared before it comes
        self.shortlisted = pipeline.shortlists(self.read, pipeline.room(None, query_tokens))
        self._windows: Any = []
        if not self.shortlisted:
            self._plan = pipeline.plan(self.read, plan, layout, query_tokens=query_tokens)
            self._room = self._plan.room
            self._windows = pipeline.prepare(self._plan, show_progress, self._kv_dtype)

    # ------------------------------------------------------------------ memory
    @property
    def num_windows(self) -> int:
        """Prepared prefixes: the windows of every pass (two coverings under ``cross_window="overlap"``, the
        default, for an input of several windows), times two for layout ``"both"``."""
        return sum(len(ws) for ws in self._windows)

    @property
    def num_tokens(self) -> int:
        """Prompt tokens held in the prefixes' KV caches."""
        return sum(len(p.prefix_ids) + len(p.shared_ids) for ws in self._windows for _, _, p in ws)

    @property
    def bytes_per_token(self) -> int:
        """KV-cache bytes per prompt token: keys and values of the layers up to the deepest read head."""
        return self.pipeline.engine.bytes_per_token(self.plan, self._kv_dtype)

    @property
    def nbytes(self) -> int:
        """Bytes this context holds now (KV caches and calibration vectors; 0 once closed)."""
        return sum(p.nbytes for ws in self._windows for _, _, p in ws)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Free the KV caches. Later questions raise :class:`ContextClosedError`; closing twice is fine."""
        with self._lock:
            release(self._windows)
            self._closed = True

    def __enter__(self) -> PreparedContext:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ questions
    def head_attention(self, query: str) -> HeadAttention:
        """The per-head calibrated attention of ``query`` over :attr:`read` (see :class:`HeadAttention`)."""
        query = check_query(query)
        span = self.pipeline.loaded.builder.query_span_ids(query)
        with self._lock:
            self._check_open()
            if self.shortlisted:
                return self.pipeline.attention(query, self.read, self.plan, self.layout, self._show_progress)
            if len(span) > self._room:
                raise QueryTooLongError(
                    f"the question takes {len(span)} query-span tokens but this context's windows kept room for "
                    f"{self._room} (query_tokens={self.query_tokens}); prepare it with a larger "
                    "scorer.context(chunks, query_tokens=...) or call scorer.score(query, chunks)"
                )
            return self.pipeline.ask(query, self._windows, self._plan)

    def _check_open(self) -> None:
        if self._closed:
            raise ContextClosedError("this prepared context was closed; prepare a new one with scorer.context(chunks)")

    def score(self, query: str) -> list[float]:
        """One score per chunk, as ``scorer.score(query, chunks)`` gives them.

        Example:
            >>> from qr_integrations import QRScorer
            >>> with QRScorer().context(["Paris is in France.", "Bananas have potassium."]) as ctx:
            ...     scores = ctx.score("Which fruit has potassium?")
            >>> scores[1] > scores[0]
            True
        """
        if not self.chunks:
            self.head_attention(query)  # the same checks as a non-empty context
            return []
        if self.shortlisted:
            with self._lock:
                self._check_open()
            return self.pipeline.scores(check_query(query), self.chunks, self.plan, self.layout, self._show_progress)
        # under cross_window="tournament", rounds after the first run as plain calls (they depend on the query)
        found = self.pipeline.finish(self.head_attention(query), self.read, self.plan, self.layout)
        return spread_copies(found, self._index)

    def rank(self, query: str, top_n: int | None = None) -> RankedResults:
        """The chunks best first for ``query``, as ``scorer.rank(query, chunks, top_n)``."""
        check_positive("top_n", top_n)
        return ranked(query, self.chunks, self.score(query), top_n)

    def trim(self, query: str, max_tokens: int | None = None, top_n: int | None = None,
             keep_order: bool = True) -> TrimResult:
        """The chunks that matter for ``query`` within a budget, as ``scorer.trim(query, chunks, ...)``."""
        check_positive("max_tokens", max_tokens)
        check_positive("top_n", top_n)
        query = check_query(query)
        texts = self._texts
        scores = self.score(query)
        if self._counts is None:
            self._counts = [self.pipeline.loaded.builder.plain_token_count(t) for t in texts]
        return trimmed(query, texts, scores, self._counts, max_tokens, top_n, keep_order)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.nbytes / 2**20:.1f} MiB"
        if self.shortlisted and not self._closed:
            state += f", shortlisted per question (shortlist={self.pipeline.config.effective_shortlist})"
        return (f"PreparedContext({len(self.chunks)} chunks, {self.num_windows} prefix(es), "
                f"{self.num_tokens} tokens, {state})")

    def __getstate__(self) -> Any:
        raise TypeError("a PreparedContext holds a KV cache and cannot be pickled; prepare it where it is used")
