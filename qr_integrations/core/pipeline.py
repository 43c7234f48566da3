"""The scoring pipeline: the one path every score takes, plain call or prepared context.

QRHead (arXiv 2506.09944) as four steps, each in one place:

1. **plan** (:meth:`Pipeline.plan`): the prompt orders (the ``layout``, times ``orders`` rotations,
   :mod:`.layout`), for each order the windows of every covering (chunks packed into forward passes of at
   most ``max_context_tokens``; a chunk longer than a window is cut into pieces, :mod:`.windows`), and the
   heads to read (:class:`~.engine.HeadPlan`);
2. **prefill** (:meth:`Pipeline.prefill`): each window's prompt prefix (template and chunk blocks,
   :mod:`.prompt`) runs once to the deepest selected layer, with the null query (``"N/A"``) over it for
   calibration (:mod:`.engine`, :mod:`.capture`); a window that runs out of CUDA memory is split and
   retried;
3. **tails** (:meth:`Pipeline.ask`): a question's own tokens run over each prefix's KV cache and the
   attention of its rows over the context is captured for the selected heads, calibrated by the null
   query's: a :class:`~.aggregate.HeadAttention`;
4. **aggregate** (:meth:`Pipeline.finish`): heads summed, low-outlier tokens dropped, one score per chunk,
   passes averaged, tournament rounds where configured (:mod:`.aggregate`), the prior fused
   (:mod:`.prior`).

A plain call is a prepared context used once: planned for its question (the window keeps room for it,
and the question's leading tokens run with the prefix), each prefix freed as soon as the question's tail
has run over it, so one window's KV cache is held at a time. :class:`~.context.PreparedContext` runs the
same plan and prefill for any question up to ``query_tokens`` and keeps the prefixes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from .aggregate import HeadAttention, WindowAttention, final_scores
from .chunking import split_text
from .config import ScorerConfig
from .engine import ForwardEngine, HeadPlan, PrefixCache, PreparedPrefix, shared_length, torch_threads
from .layout import layout_orders
from .models import LoadedModel
from .prior import fuse_prior, prior_scores, shortlist_indices, spread_shortlist
from .prompt import EncodedPrompt, as_list, distinct_chunks, spread_copies
from .windows import Window, capacity, plan_coverings, query_room, reserve_tokens, schedule, window_cost, window_progress

R = TypeVar("R")
Norm = tuple[str | None, str]
#: One kept window: its chunks' input indices, their token spans in the prefix, and the prefix.
Prefixed = tuple[tuple[int, ...], tuple[tuple[int, int], ...], PreparedPrefix]


def chunk_texts(chunks: Sequence[Norm]) -> list[str]:
    """Each normalized chunk as the text the prior and ``trim`` see (title on its own line).

    Example:
        >>> chunk_texts([(None, "a"), ("T", "b")])
        ['a', 'T\\nb']
    """
    return [(f"{t}\n{x}" if t else x) for t, x in chunks]


@dataclass(frozen=True)
class Plan:
    """What a pass over some chunks will run, decided before any forward pass.

    Attributes:
        heads: the heads captured.
        num_chunks: how many input chunks.
        room: query-span tokens every window keeps free.
        shared: the query-span tokens run with every prefix (questions that start with them skip them).
        query: the question the plan was made for, or ``None`` for any question (a prepared context).
        passes: per pass, the prompt order (input indices) and its windows; the passes of each order are
            its coverings (two under ``cross_window="overlap"`` for an input of several windows).
    """

    heads: HeadPlan
    num_chunks: int
    room: int
    shared: tuple[int, ...]
    query: str | None
    passes: tuple[tuple[tuple[int, ...], tuple[Window, ...]], ...]


class Pipeline:
    """Plan, prefill, tails and aggregation for one loaded model under one :class:`ScorerConfig`.

    :class:`~.scorer.QRScorer` builds one on first use (``scorer.pipeline``); everything it scores goes
    through here.

    Example:
        >>> from qr_integrations import QRScorer
        >>> scorer = QRScorer(prior="none", orders=1)
        >>> pipe, chunks = scorer.pipeline, [(None, "Paris is in France."), (None, "Bananas have potassium.")]
        >>> plan = pipe.plan(chunks, scorer.head_plan(), "input", query="Which fruit?")
        >>> [len(windows) for _, windows in plan.passes]
        [1]
        >>> texts = [text for _, text in chunks]
        >>> pipe.scores("Which fruit?", chunks, plan.heads, "input") == scorer.score("Which fruit?", texts)
        True
    """

    def __init__(self, loaded: LoadedModel, config: ScorerConfig, prefix_cache: PrefixCache | None = None) -> None:
        self.loaded = loaded
        self.config = config
        self.prefix_cache = prefix_cache
        self.engine = ForwardEngine(loaded, config.num_threads)

    # ------------------------------------------------------------------ 1. plan
    @property
    def window_tokens(self) -> int:
        """The most tokens in one forward pass."""
        cap = self.config.max_context_tokens
        return min(cap, self.loaded.max_positions) if cap else self.loaded.max_positions

    @property
    def query_reserve(self) -> int:
        """Query tokens every window keeps room for, so questions up to this long get the same windows."""
        return reserve_tokens(self.window_tokens)

    def room(self, query: str | None, reserve: int | None = None) -> int:
        """Query-span tokens a window keeps free for ``query`` (``None``: any question up to ``reserve``)."""
        reserve = self.query_reserve if reserve is None else reserve
        return query_room(self.loaded.builder, query, self.config.null_query, reserve)

    def coverings(self, chunks: Sequence[Norm], room: int) -> list[list[Window]]:
        """The windows of every covering of ``chunks`` (in prompt order) under ``cross_window``."""
        builder = self.loaded.builder
        cap = capacity(builder, self.window_tokens, room)
        return plan_coverings(builder, chunks, cap, self.config.cross_window)

    def chunks_of(self, text_or_chunks: Any) -> list[Any]:
        """A string split into chunks of up to ``chunk_size`` tokens (as ``trim`` splits it), or the list."""
        if isinstance(text_or_chunks, str):
            return list(split_text(text_or_chunks, self.config.chunk_size, self.loaded.builder.plain_token_count))
        return as_list(text_or_chunks)

    def plan(self, chunks: Sequence[Norm], heads: HeadPlan, layout: str, *, query: str | None = None,
             query_tokens: int | None = None) -> Plan:
        """The passes over ``chunks`` for ``query``, or for any question up to ``query_tokens`` tokens."""
        builder, cfg = self.loaded.builder, self.config
        if query is None:
            room = self.room(None, query_tokens)
            null_span = builder.query_span_ids(cfg.null_query)
            shared = null_span[: shared_length(null_span, builder.query_span_ids(""))]  # the instruction
        else:
            room = self.room(query)
            span = builder.query_span_ids(query)
            calibrated = cfg.calibrate or self.prefix_cache is not None
            spans = [span, builder.query_span_ids(cfg.null_query)] if calibrated else [span]
            shared = span[: shared_length(*spans)]
        passes = [
            (tuple(order), tuple(windows))
            for order in layout_orders(len(chunks), layout, cfg.orders)
            for windows in (self.coverings([chunks[i] for i in order], room) if chunks else [[]])
        ]
        return Plan(heads, len(chunks), room, tuple(shared), query, tuple(passes))

    # ------------------------------------------------------------------ 2. prefill
    def _prefix(self, enc: EncodedPrompt, plan: Plan) -> PreparedPrefix:
        """One window's prefix: run now, or from the prefix cache for a plain call's plan."""
        null_ids = enc.null_ids if self.config.calibrate else None
        cache = self.prefix_cache if plan.query is not None else None
        key: Hashable = (plan.heads.heads, tuple(enc.prefix_ids), plan.shared,
                         None if null_ids is None else tuple(null_ids))
        if cache is not None and (hit := cache.get(key)) is not None:
            return hit
        prefix = self.engine.prepare(enc.prefix_ids, plan.heads, shared_ids=plan.shared, null_ids=null_ids)
        if cache is not None:
            cache.put(key, prefix)
        return prefix

    def prefill(self, plan: Plan, tail: Callable[[PreparedPrefix, EncodedPrompt], R],
                show_progress: bool | None = None) -> list[list[tuple[tuple[int, ...], tuple[tuple[int, int], ...], R]]]:
        """Run every window's prefix of ``plan`` and ``tail(prefix, encoded)`` right after it.

        Returns, per pass, ``(owners, chunk_spans, tail result)`` per window: ``owners`` are the input
        indices of the window's chunks (a piece of a split chunk names its chunk). A plain call's tail
        runs the question and drops the prefix; a prepared context's keeps it.
        """
        cfg, builder, limit = self.config, self.loaded.builder, self.window_tokens
        show = cfg.show_progress if show_progress is None else show_progress

        def run(window: Window) -> tuple[tuple[tuple[int, int], ...], R] | None:
            enc = builder.encode(plan.query or cfg.null_query, [(u.title, u.text) for u in window],
                                 null_query=cfg.null_query)
            if len(enc.prefix_ids) + plan.room > limit and len(window) > 1:
                return None  # boundary tokenization overshot the window: halve it
            return tuple(enc.chunk_spans), tail(self._prefix(enc, plan), enc)

        out = []
        for order, windows in plan.passes:
            progress = window_progress(sum(window_cost(w) for w in windows), len(windows), show)
            try:
                out.append([(tuple(order[u.owner] for u in window), spans, result)
                            for window, (spans, result) in schedule(builder, windows, run, limit, progress)])
            finally:
                if progress is not None:
                    progress.close()
        return out

    def prepare(self, plan: Plan, show_progress: bool | None = None,
                kv_dtype: torch.dtype | None = None) -> list[list[Prefixed]]:
        """Prefill ``plan`` and keep every prefix (stored in ``kv_dtype`` when given) for :meth:`ask`."""

        def keep(prefix: PreparedPrefix, enc: EncodedPrompt) -> PreparedPrefix:
            if kv_dtype is not None:
                prefix.store_as(kv_dtype)
            return prefix

        return self.prefill(plan, keep, show_progress)

    # ------------------------------------------------------------------ 3. tails
    def ask(self, query: str, prefixes: Sequence[Sequence[Prefixed]], plan: Plan) -> HeadAttention:
        """``query``'s calibrated attention over the prefixes :meth:`prepare` kept."""
        span = self.loaded.builder.query_span_ids(query)
        layouts = tuple(
            tuple(WindowAttention(owners, spans, self.engine.calibrated(prefix, span), prefix.null)
                  for owners, spans, prefix in windows)
            for windows in prefixes
        )
        return self._head_attention(query, plan, layouts)

    def attention(self, query: str, chunks: Sequence[Norm], heads: HeadPlan, layout: str,
                  show_progress: bool | None = None) -> HeadAttention:
        """A plain call's attention: planned for ``query``; each prefix is dropped once its tail has run."""
        plan = self.plan(chunks, heads, layout, query=query)

        def tail(prefix: PreparedPrefix, enc: EncodedPrompt) -> tuple[torch.Tensor, torch.Tensor | None]:
            return self.engine.calibrated(prefix, enc.query_ids), prefix.null

        passes = self.prefill(plan, tail, show_progress)
        layouts = tuple(tuple(WindowAttention(owners, spans, vectors, null) for owners, spans, (vectors, null) in p)
                        for p in passes)
        return self._head_attention(query, plan, layouts)

    def _head_attention(self, query: str, plan: Plan, layouts: Any) -> HeadAttention:
        cfg = self.config
        return HeadAttention(query, plan.heads.heads, plan.num_chunks, layouts, cfg.cross_window,
                             cfg.effective_calibration)

    # ------------------------------------------------------------------ 4. aggregate
    def prior(self, query: str, chunks: Sequence[Norm]) -> list[float] | None:
        """The configured prior's scores of ``chunks`` (``None`` without a prior)."""
        cfg = self.config
        with torch_threads(cfg.num_threads):
            return prior_scores(query, chunk_texts(chunks), cfg.prior, cfg.prior_model, str(self.loaded.device))

    def finish(self, att: HeadAttention, chunks: Sequence[Norm], heads: HeadPlan, layout: str,
               show_progress: bool | None = None) -> list[float]:
        """Chunk scores from ``att`` (tournament rounds re-scored as plain calls), the prior fused at QRHead's
        share for as many windows as ``att`` was read in (:meth:`~.config.ScorerConfig.weight_for`)."""
        scores = self._qrhead(att, chunks, heads, layout, show_progress)
        if len(scores) < 2:
            return scores
        return fuse_prior(scores, self.prior(att.query, chunks), self.config.weight_for(att.windows))

    def _qrhead(self, att: HeadAttention, chunks: Sequence[Norm], heads: HeadPlan, layout: str,
                show_progress: bool | None) -> list[float]:
        return final_scores(att, list(chunks), self.config.outlier_std,
                            lambda sub: self.attention(att.query, sub, heads, layout, show_progress))

    def read_chunks(self, chunks: Sequence[Norm]) -> tuple[list[Norm], list[int] | None]:
        """The chunks the model reads for ``chunks``, and where each input chunk's score comes from.

        Under ``dedupe`` (the default) each distinct chunk once (:func:`~.prompt.distinct_chunks`) and the
        index of every input chunk's copy; otherwise, or when nothing repeats, the chunks and ``None``.

        Example:
            >>> from qr_integrations import QRScorer
            >>> QRScorer().pipeline.read_chunks([(None, "a"), (None, "b"), (None, " a")])
            ([(None, 'a'), (None, 'b')], [0, 1, 0])
            >>> QRScorer(dedupe=False).pipeline.read_chunks([(None, "a"), (None, " a")])
            ([(None, 'a'), (None, ' a')], None)
        """
        if self.config.dedupe:
            read, index = distinct_chunks(chunks)
            if len(read) < len(chunks):
                return read, index
        return list(chunks), None

    def shortlists(self, chunks: Sequence[Norm], room: int) -> bool:
        """Whether a plain call cuts ``chunks`` to a shortlist: ``shortlist`` is in effect (a prior is set),
        there are more chunks than it keeps (or, under ``shortlist_window``, more than one), and they need
        more than one window with ``room`` query tokens.

        Example:
            >>> from qr_integrations import QRScorer
            >>> pipe = QRScorer().pipeline
            >>> pipe.shortlists([(None, "a")] * 30, pipe.room(None)), pipe.config.effective_shortlist
            (False, 20)
        """
        limit = self.config.effective_shortlist
        fewest = 1 if self.config.shortlist_window else (limit or 0)
        return bool(limit) and len(chunks) > fewest and len(self.coverings(chunks, room)[0]) > 1

    def shortlist(self, query: str, chunks: Sequence[Norm], prior: Sequence[float]) -> list[int]:
        """The input indices (in input order) of the chunks QRHead reads when :meth:`shortlists` says to
        cut: the ``prior``'s best ``shortlist`` chunks; under ``shortlist_window`` only as many of them as
        fit one window with ``query`` (at least one).

        Example:
            >>> from qr_integrations import QRScorer
            >>> pipe = QRScorer(max_context_tokens=512, shortlist_window=True).pipeline
            >>> chunks = [(None, f"Paragraph {i}: " + "word " * 60) for i in range(12)]
            >>> keep = pipe.shortlist("Which paragraph?", chunks, [float(i) for i in range(12)])
            >>> keep == sorted(keep) and keep[-1] == 11 and 1 <= len(keep) < 12
            True
        """
        limit = min(self.config.effective_shortlist or len(chunks), len(chunks))
        if not self.config.shortlist_window:
            return shortlist_indices(prior, limit)
        room = self.room(query)

        def fits(k: int) -> bool:  # one window holds the best k (tokens only grow with k: a binary search)
            return len(self.coverings([chunks[i] for i in shortlist_indices(prior, k)], room)[0]) == 1

        lo, hi = 1, limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return shortlist_indices(prior, lo)

    def scores(self, query: str, chunks: Sequence[Norm], heads: HeadPlan, layout: str,
               show_progress: bool | None = None) -> list[float]:
        """A plain call's scores: :meth:`attention` then :meth:`finish` (``[]`` for no chunks).

        Repeated chunks are read once under ``dedupe`` (:meth:`read_chunks`) and every copy gets their score.
        Under ``shortlist=N`` an input past one window with more than N chunks is first cut to the prior's
        best N (:meth:`shortlist`, kept in input order; under ``shortlist_window`` only those that fit one
        window); QRHead reads only those, and the rest score as if QRHead gave them its lowest score: the
        prior's order below every shortlisted chunk. The prior is fused at QRHead's share for as many windows
        as QRHead read (``prior_weight``, or ``prior_weight_long`` past one).
        """
        read, index = self.read_chunks(chunks)
        if index is not None:
            return spread_copies(self.scores(query, read, heads, layout, show_progress), index)
        if not self.shortlists(chunks, self.room(query)):
            return self.finish(self.attention(query, chunks, heads, layout, show_progress), chunks, heads, layout,
                               show_progress) if chunks else []
        prior = self.prior(query, chunks)
        assert prior is not None  # an effective shortlist implies a prior
        keep = self.shortlist(query, chunks, prior)
        sub = [chunks[i] for i in keep]
        att = self.attention(query, sub, heads, layout, show_progress)
        found = self._qrhead(att, sub, heads, layout, show_progress)
        full = spread_shortlist(found, keep, len(chunks))
        return fuse_prior(full, prior, self.config.weight_for(att.windows))

    def score_batch(self, queries: Sequence[str], chunk_lists: Sequence[Sequence[Norm]], heads: HeadPlan,
                    layout: str, show_progress: bool = False) -> list[list[float]]:
        """Scores of independent pairs, grouped by plan: questions that share a chunk list and fit the
        reserve share one prefill; the rest are plain calls. One progress bar counts the pairs."""
        if len(chunk_lists) != len(queries):
            raise ValueError(
                f"score_batch needs one chunk list per query: got {len(queries)} queries and {len(chunk_lists)} "
                "chunk lists; repeat a shared list ([chunks] * len(queries)) to ask several questions of it"
            )
        reads = [self.read_chunks(chunks) for chunks in chunk_lists]
        if any(index is not None for _, index in reads):
            found = self.score_batch(queries, [read for read, _ in reads], heads, layout, show_progress)
            return [spread_copies(s, index) for s, (_, index) in zip(found, reads, strict=True)]
        groups: dict[tuple[Norm, ...], list[int]] = {}
        for i, chunks in enumerate(chunk_lists):
            groups.setdefault(tuple(chunks), []).append(i)
        out: list[list[float]] = [[] for _ in queries]
        room = self.room(None)
        progress = None
        if show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(queries), desc=f"scoring {len(queries)} pairs", unit="pair")
        try:
            for key, members in groups.items():
                chunks = list(key)
                fits = [i for i in members if len(self.loaded.builder.query_span_ids(queries[i])) <= room]
                # a shortlist depends on the question, so such pairs cannot share a prefill (plain calls then)
                shared = bool(chunks) and len(fits) > 1 and not self.shortlists(chunks, room)
                if shared:
                    plan = self.plan(chunks, heads, layout)
                    prefixes = self.prepare(plan, show_progress=False)
                    try:
                        for i in fits:
                            out[i] = self.finish(self.ask(queries[i], prefixes, plan), chunks, heads, layout)
                            if progress is not None:
                                progress.update(1)
                    finally:
                        release(prefixes)
                for i in members:
                    if not (shared and i in fits):
                        out[i] = self.scores(queries[i], chunks, heads, layout, show_progress=False)
                        if progress is not None:
                            progress.update(1)
        finally:
            if progress is not None:
                progress.close()
        return out


def release(prefixes: Sequence[Sequence[Prefixed]]) -> None:
    """Free the KV caches and vectors of prefixes :meth:`Pipeline.prepare` kept (a context's ``close``).

    Example:
        >>> from qr_integrations import QRScorer
        >>> scorer = QRScorer()
        >>> pipe = scorer.pipeline
        >>> kept = pipe.prepare(pipe.plan([(None, "Bananas have potassium.")], scorer.head_plan(), "input"))
        >>> release(kept)
        >>> kept[0][0][2].closed
        True
    """
    for windows in prefixes:
        for _, _, prefix in windows:
            prefix.release()
            prefix.null = None
            prefix.common = 0.0
