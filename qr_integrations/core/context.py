"""A prepared context: chunks encoded once, any number of questions at the cost of each question's tokens.

QRHead's prompt puts the chunks first and the question last, so everything computed over the chunks is
the same for every question: each window's prefix KV cache, the null-query calibration and the rows of
the instruction that every query span starts with. :meth:`QRScorer.context` computes them once;
:class:`PreparedContext` then runs only each question's own tokens over the cached prefixes.

Windows are planned for any question up to ``query_tokens`` tokens (the same reservation plain calls
make), so a prepared context scores exactly the windows that ``QRScorer.score`` would.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch

from .aggregate import HeadAttention, WindowAttention, final_scores, ranked, trimmed
from .engine import ContextClosedError, HeadPlan, PreparedPrefix, shared_length
from .layout import layout_orders
from .prior import with_prior
from .results import RankedResults, TrimResult
from .validate import check_positive, check_query
from .windows import Window, capacity, plan_coverings, query_room, schedule, window_cost, window_progress

if TYPE_CHECKING:
    from .scorer import QRScorer


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
        scorer: QRScorer,
        chunks: list[tuple[str | None, str]],
        plan: HeadPlan,
        layout: str,
        query_tokens: int,
        show_progress: bool | None = None,
        kv_dtype: str | None = None,
    ) -> None:
        self._kv_dtype = resolve_kv_dtype(kv_dtype, scorer.loaded.dtype)
        self.scorer = scorer
        self.chunks = list(chunks)
        self.plan = plan
        self.heads = plan.heads
        self.layout = layout
        self.query_tokens = query_tokens
        self._lock = threading.RLock()
        self._counts: list[int] | None = None
        self._texts = [(f"{t}\n{x}" if t else x) for t, x in self.chunks]
        self._closed = False
        builder = scorer.loaded.builder
        null_query = scorer.config.null_query
        self._room = query_room(builder, None, null_query, query_tokens)
        null_span = builder.query_span_ids(null_query)
        # the query span's tokens every question shares (the instruction up to "Query:")
        self._shared = list(null_span[: shared_length(null_span, builder.query_span_ids(""))])
        limit = scorer.window_tokens
        self._windows: list[list[tuple[tuple[int, ...], tuple[tuple[int, int], ...], PreparedPrefix]]] = []
        engine = scorer.engine
        calibrate = scorer.config.calibrate
        self.cross_window = scorer.config.cross_window

        def run(window: Window) -> tuple[tuple[tuple[int, int], ...], PreparedPrefix] | None:
            enc = builder.encode(null_query, [(u.title, u.text) for u in window], null_query=null_query)
            if len(enc.prefix_ids) + self._room > limit and len(window) > 1:
                return None
            prefix = engine.prepare(enc.prefix_ids, plan, shared_ids=self._shared,
                                    null_ids=enc.null_ids if calibrate else None)
            if self._kv_dtype is not None:
                prefix.store_as(self._kv_dtype)
            return tuple(enc.chunk_spans), prefix

        cap = capacity(builder, limit, self._room)
        show = scorer.config.show_progress if show_progress is None else show_progress
        coverings = [
            (order, windows)
            for order in layout_orders(len(self.chunks), layout, scorer.config.orders)
            for windows in (plan_coverings(builder, [self.chunks[i] for i in order], cap, self.cross_window)
                            if self.chunks else [[]])
        ]
        for order, windows in coverings:
            progress = window_progress(sum(window_cost(w) for w in windows), len(windows), show)
            try:
                prepared = [
                    (tuple(order[u.owner] for u in window), spans, prefix)
                    for window, (spans, prefix) in schedule(builder, windows, run, limit, progress)
                ]
            finally:
                if progress is not None:
                    progress.close()
            self._windows.append(prepared)

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
        return self.scorer.engine.bytes_per_token(self.plan, self._kv_dtype)

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
            for ws in self._windows:
                for _, _, p in ws:
                    p.release()
                    p.null = None
                    p.common = 0.0
            self._closed = True

    def __enter__(self) -> PreparedContext:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ questions
    def head_attention(self, query: str) -> HeadAttention:
        """The per-head calibrated attention of ``query`` over the chunks (see :class:`HeadAttention`)."""
        query = check_query(query)
        span = self.scorer.loaded.builder.query_span_ids(query)
        with self._lock:
            if self._closed:
                raise ContextClosedError(
                    "this prepared context was closed; prepare a new one with scorer.context(chunks)"
                )
            if len(span) > self._room:
                raise QueryTooLongError(
                    f"the question takes {len(span)} query-span tokens but this context's windows kept room for "
                    f"{self._room} (query_tokens={self.query_tokens}); prepare it with a larger "
                    "scorer.context(chunks, query_tokens=...) or call scorer.score(query, chunks)"
                )
            engine = self.scorer.engine
            layouts = tuple(
                tuple(WindowAttention(owners, spans, engine.calibrated(prefix, span), prefix.null)
                      for owners, spans, prefix in ws)
                for ws in self._windows
            )
        return HeadAttention(query, self.heads, len(self.chunks), layouts, self.cross_window,
                             self.scorer.config.effective_calibration)

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
        # under cross_window="tournament", rounds after the first run as plain passes (they depend on the query)
        heads = list(self.heads)
        cfg = self.scorer.config
        scores = final_scores(
            self.head_attention(query), self.chunks, cfg.outlier_std,
            lambda sub: self.scorer.head_attention(query, [c if t is None else (t, c) for t, c in sub], heads,
                                                   layout=self.layout))
        return with_prior(scores, query, self._texts, cfg.prior, cfg.prior_weight)

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
            self._counts = [self.scorer.count_tokens(t) for t in texts]
        return trimmed(query, texts, scores, self._counts, max_tokens, top_n, keep_order)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.nbytes / 2**20:.1f} MiB"
        return (f"PreparedContext({len(self.chunks)} chunks, {self.num_windows} prefix(es), "
                f"{self.num_tokens} tokens, {state})")

    def __getstate__(self) -> Any:
        raise TypeError("a PreparedContext holds a KV cache and cannot be pickled; prepare it where it is used")
