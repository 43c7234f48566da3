"""QRScorer: score, rank and trim chunks with query-focused retrieval heads.

The method (QRHead, arXiv 2506.09944), as the steps a call goes through:

1. plan windows (:mod:`.windows`): chunks are packed into forward passes of at most
   ``max_context_tokens``; a chunk longer than a window is cut into pieces;
2. prompt -> spans (:mod:`.prompt`);
3. forward with capture (:mod:`.engine`, :mod:`.capture`): each window's prefix (template + chunks) runs
   once and fills a KV cache, stopping after the deepest selected layer; the null query (``"N/A"``) and
   the query span then run over that cache, and the attention of their rows over the context is captured
   for the selected heads. The null query's attention is subtracted (calibration);
4. aggregate (:mod:`.aggregate`): the per-head calibrated attention (:class:`HeadAttention`, the public
   result every score derives from) is summed over the selected heads; per chunk, tokens below
   ``mean - 2 std`` are dropped and the rest summed; a chunk cut into pieces takes its best piece.

A window that runs out of CUDA memory is split in two and retried (a single piece is cut smaller), down
to a floor where :class:`ScorerOutOfMemoryError` says what to change.

Because the chunks come before the question, :meth:`QRScorer.context` prepares them once and answers
any number of questions at the cost of each question's own tokens (:mod:`.context`); the opt-in prefix
cache (``prefix_cache_mb``) does the same for plain calls that see the same chunks again.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence, Set
from typing import Any

import torch

from .aggregate import (
    HeadAttention,
    HeadScores,
    WindowAttention,
    chunk_scores,
    final_scores,
    ranked,
    select_within_budget,
    trimmed,
)
from .chunking import split_text
from .config import ScorerConfig
from .context import PreparedContext
from .engine import ForwardEngine, HeadPlan, PrefixCache, PreparedPrefix, shared_length, torch_threads
from .heads import HeadSet, HeadSpec, default_head_set_for
from .layout import check_layout, layout_orders
from .models import DeviceError, LoadedModel, load_model, locate_model, model_shape, resolve_device, resolve_dtype
from .prior import with_prior
from .prompt import Chunk, EncodedPrompt, normalize_chunk
from .results import RankedResults, TrimResult
from .validate import check_positive, check_query
from .windows import (
    ScorerOutOfMemoryError,
    Unit,
    Window,
    capacity,
    plan_coverings,
    query_room,
    reserve_tokens,
    schedule,
    window_cost,
    window_progress,
)

__all__ = [
    "HeadAttention",
    "HeadScores",
    "QRScorer",
    "ScorerOutOfMemoryError",
    "check_config",
    "chunk_scores",
    "select_within_budget",
    "torch_threads",
]


def check_config(config: ScorerConfig, heads: HeadSet | None = None) -> tuple[int, int] | None:
    """Check what can be checked without loading weights, with the errors loading would raise.

    The model argument (a local path that does not exist, a folder without ``config.json``, a missing
    embedded package: :class:`ModelLoadError`), the device (``"gpu"``, ``"cuda"`` on a CPU-only torch:
    :class:`~qr_integrations.core.models.DeviceError`), the dtype (``ValueError``), and the head set
    against the model's shape when that is known without loading (the embedded model, a local folder, a
    hub id in the local cache: :class:`HeadSetError`). Returns that shape, or ``None``.

    Example:
        >>> check_config(ScorerConfig(heads="3-1"))
        (30, 9)
        >>> check_config(ScorerConfig(heads="31-1"))
        Traceback (most recent call last):
        ...
        qr_integrations.core.heads.HeadSetError: heads [(31, 1)] are outside this model (30 layers x 9 heads, 0-based); ...
    """
    device = resolve_device(config.device)
    resolve_dtype(config.dtype, device)
    if config.quantize is not None and device.type != "cpu":
        raise DeviceError(
            f"quantize={config.quantize!r} (dynamic int8 linear layers) runs on the CPU only, but the device is "
            f"{device}; use device='cpu' or drop quantize (on an accelerator, use dtype='bfloat16' instead)"
        )
    shape = model_shape(config.model)
    if shape is not None:
        head_set = heads if heads is not None else config.head_set()
        if head_set is None:
            head_set = default_head_set_for(locate_model(config.model)[1])
        head_set.resolve(*shape)
    return shape


class QRScorer:
    """Zero-shot relevance scores from a decoder LLM's query-focused retrieval heads.

    Args:
        model: hub id, local folder or ``.gguf`` path; ``None`` for the embedded SmolLM2-135M-Instruct.
        heads: the head set (see :class:`HeadSet`); ``None`` for the model's shipped default.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        dtype: ``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"``.
        config: a :class:`ScorerConfig` (or dict/path); explicit arguments override its fields.
        **options: any other :class:`ScorerConfig` field (``null_query``, ``calibrate``,
            ``max_context_tokens``, ``chunk_size``, ``outlier_std``, ``cache_dir``, ``show_progress``,
            ``layout``, ``num_threads``, ``prefix_cache_mb``, ``cross_window``, and the position
            corrections ``calibration``, ``orders``, ``prior``, ``prior_weight``: see docs/position.md).

    The model is loaded lazily on first use and shared with every other scorer of the same model,
    device and dtype. What can be checked without loading it is checked here (see :func:`check_config`).

    Raises:
        ModelLoadError: a local model path that does not exist, a folder without ``config.json``, or the
            embedded model's package missing.
        DeviceError: a device that is no torch device or is not available here.
        HeadSetError: heads outside the model, when its shape is known without loading it.

    Example:
        >>> from qr_integrations import QRScorer
        >>> scorer = QRScorer()  # embedded SmolLM2-135M-Instruct on the CPU
        >>> chunks = ["The Eiffel Tower is in Paris.", "Bananas are rich in potassium."]
        >>> scores = scorer.score("Which fruit has potassium?", chunks)
        >>> scores[1] > scores[0]
        True
        >>> scorer.rank("Which fruit has potassium?", chunks).indices
        [1, 0]
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        heads: HeadSpec = None,
        device: str = "auto",
        dtype: str = "auto",
        config: ScorerConfig | dict[str, Any] | str | None = None,
        **options: Any,
    ) -> None:
        base = ScorerConfig.load(config) if config is not None else ScorerConfig()
        changes: dict[str, Any] = dict(options)
        if model is not None:
            changes["model"] = os.fspath(model)
        if heads is not None:
            changes["heads"] = heads if not isinstance(heads, HeadSet) else heads.to_string()
            self._explicit_heads: HeadSet | None = HeadSet.parse(heads)
        else:
            self._explicit_heads = None
        if device != "auto":
            changes["device"] = str(device)
        if dtype != "auto":
            changes["dtype"] = str(dtype)
        try:
            self.config = base.replace(**changes) if changes else base
        except TypeError as exc:
            raise TypeError(f"{exc}; valid options are the ScorerConfig fields") from exc
        self._loaded: LoadedModel | None = None
        self._heads: HeadSet | None = None
        self._engine: ForwardEngine | None = None
        mb = self.config.prefix_cache_mb
        self._prefix_cache = PrefixCache(int(mb * 2**20)) if mb else None
        # a bad model path, device, dtype or head set fails here, not at the first query
        check_config(self.config, self._explicit_heads)

    @classmethod
    def from_config(cls, config: ScorerConfig | dict[str, Any] | str | os.PathLike[str]) -> QRScorer:
        """Build a scorer from a :class:`ScorerConfig`, a dict, YAML/JSON text or a config file path.

        Example:
            >>> scorer = QRScorer.from_config({"heads": "all", "max_context_tokens": 2048})
        """
        return cls(config=ScorerConfig.load(config))

    # ------------------------------------------------------------------ model, heads, engine
    @property
    def loaded(self) -> LoadedModel:
        """The shared loaded model (loads it on first access)."""
        if self._loaded is None:
            cfg = self.config
            self._loaded = load_model(cfg.model, cfg.device, cfg.dtype, cfg.cache_dir, show_progress=cfg.show_progress,
                                      quantize=cfg.quantize)
        return self._loaded

    @property
    def head_set(self) -> HeadSet:
        """The head set in use (the model's default when none was given)."""
        if self._heads is None:
            explicit = self._explicit_heads if self._explicit_heads is not None else self.config.head_set()
            hs = explicit if explicit is not None else default_head_set_for(self.loaded.name)
            hs.resolve(self.loaded.num_layers, self.loaded.num_heads)  # fail early on a bad set
            self._heads = hs
        return self._heads

    @property
    def engine(self) -> ForwardEngine:
        """The forward engine every pass of this scorer goes through (built on first use).

        Assign a subclass to watch or fail passes (tests, benchmarks) without touching private methods.
        """
        if self._engine is None:
            self._engine = ForwardEngine(self.loaded, self.config.num_threads)
        return self._engine

    @engine.setter
    def engine(self, engine: ForwardEngine) -> None:
        self._engine = engine

    @property
    def prefix_cache(self) -> PrefixCache | None:
        """The LRU of prepared prefixes (``None`` when ``prefix_cache_mb`` is 0)."""
        return self._prefix_cache

    def head_plan(self, heads: HeadSpec = None) -> HeadPlan:
        """The capture plan for ``heads`` (this scorer's head set when ``None``) on this model."""
        lm = self.loaded
        hs = self.head_set if heads is None else (heads if isinstance(heads, HeadSet) else HeadSet.parse(heads))
        return HeadPlan.build(hs.resolve(lm.num_layers, lm.num_heads), lm.device)

    @property
    def window_tokens(self) -> int:
        """The most tokens in one forward pass."""
        cap = self.config.max_context_tokens
        return min(cap, self.loaded.max_positions) if cap else self.loaded.max_positions

    @property
    def query_reserve(self) -> int:
        """Query tokens every window keeps room for (64, at most 1/16 of a window): questions up to this
        long get the same windows, so prepared contexts and the prefix cache fit them."""
        return reserve_tokens(self.window_tokens)

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` as plain user text under the model's tokenizer.

        Example:
            >>> QRScorer().count_tokens("hello world") > 0
            True
        """
        return self.loaded.builder.plain_token_count(text)

    # ------------------------------------------------------------------ windows
    def _room(self, query: str | None, reserve: int | None = None) -> int:
        reserve = self.query_reserve if reserve is None else reserve
        return query_room(self.loaded.builder, query, self.config.null_query, reserve)

    def _plan_coverings(self, chunks: Sequence[tuple[str | None, str]], room: int) -> list[list[Window]]:
        """Every pass's windows under ``cross_window`` (see :func:`~.windows.plan_coverings`)."""
        builder = self.loaded.builder
        cap = capacity(builder, self.window_tokens, room)
        return plan_coverings(builder, chunks, cap, self.config.cross_window)

    def window_plan(self, chunks: Sequence[Chunk], query: str | None = None, *,
                    every_pass: bool = False) -> list[list[Unit]]:
        """How ``chunks`` (in the order given) are packed into forward passes for ``query``.

        Each window is a list of :class:`~qr_integrations.core.windows.Unit` (a chunk, or a piece of one
        longer than a window, with ``owner`` its index). ``query=None`` plans for any query that fits
        :attr:`query_reserve`, as :meth:`context` does. An input of several windows may be read more than
        once under ``cross_window`` (``"overlap"``, the default: a second, shifted covering): by default the
        first covering is returned, with ``every_pass=True`` the windows of every pass, first pass first.

        Example:
            >>> s = QRScorer(max_context_tokens=128)
            >>> [[u.owner for u in w] for w in s.window_plan(["Bananas have potassium."] * 6)]
            [[0, 1, 2, 3, 4], [5]]
            >>> [[u.owner for u in w] for w in s.window_plan(["Bananas have potassium."] * 6, every_pass=True)]
            [[0, 1, 2, 3, 4], [5], [2, 3, 4, 5, 0], [1]]
        """
        norm = self._normalize(chunks)
        room = self._room(None if query is None else check_query(query))
        if not norm:
            return []
        coverings = self._plan_coverings(norm, room)
        return [w for c in coverings for w in c] if every_pass else coverings[0]

    def _shared_ids(self, query_ids: Sequence[int], null_ids: Sequence[int]) -> list[int]:
        """The query span's leading tokens to run with the prefix (the rows the null query shares)."""
        spans = [query_ids, null_ids] if self.config.calibrate or self._prefix_cache is not None else [query_ids]
        return list(query_ids[: shared_length(*spans)])

    def _prefix(self, enc: EncodedPrompt, shared: Sequence[int], plan: HeadPlan) -> PreparedPrefix:
        """The window's prepared prefix: from the prefix cache, or run now (and stored there)."""
        null_ids = enc.null_ids if self.config.calibrate else None
        key: Hashable = (plan.heads, tuple(enc.prefix_ids), tuple(shared), None if null_ids is None else tuple(null_ids))
        cache = self._prefix_cache
        if cache is not None:
            hit = cache.get(key)
            if hit is not None:
                return hit
        prefix = self.engine.prepare(enc.prefix_ids, plan, shared_ids=shared, null_ids=null_ids)
        if cache is not None:
            cache.put(key, prefix)
        return prefix

    def _attention(
        self, query: str, norm: Sequence[tuple[str | None, str]], plan: HeadPlan, layout: str,
        show_progress: bool | None = None,
    ) -> HeadAttention:
        """The calibrated per-head attention of ``query`` over normalized chunks, every layout order."""
        builder = self.loaded.builder
        limit = self.window_tokens
        room = self._room(query)
        layouts = []

        def run(window: Window) -> tuple[torch.Tensor, EncodedPrompt, torch.Tensor | None] | None:
            enc = builder.encode(query, [(u.title, u.text) for u in window], null_query=self.config.null_query)
            if len(enc.prefix_ids) + max(room, len(enc.query_ids)) > limit and len(window) > 1:
                return None  # boundary tokenization overshot the window: halve it
            prefix = self._prefix(enc, self._shared_ids(enc.query_ids, enc.null_ids), plan)
            return self.engine.calibrated(prefix, enc.query_ids), enc, prefix.null

        for order in layout_orders(len(norm), layout, self.config.orders):
            for windows in self._plan_coverings([norm[i] for i in order], room):
                progress = window_progress(sum(window_cost(w) for w in windows), len(windows),
                                           self.config.show_progress if show_progress is None else show_progress)
                try:
                    scored = [
                        WindowAttention(tuple(order[u.owner] for u in window), tuple(enc.chunk_spans), vectors, null)
                        for window, (vectors, enc, null) in schedule(builder, windows, run, limit, progress)
                    ]
                finally:
                    if progress is not None:
                        progress.close()
                layouts.append(tuple(scored))
        return HeadAttention(query, plan.heads, len(norm), tuple(layouts), self.config.cross_window,
                             self.config.effective_calibration)

    # ------------------------------------------------------------------ public API
    def head_attention(
        self, query: str, chunks: Sequence[Chunk], heads: HeadSpec = None, *, layout: str | None = None
    ) -> HeadAttention:
        """The per-head calibrated attention of ``query`` over ``chunks``: what every score derives from.

        One forward pass over ``heads`` (this scorer's head set when ``None``; ``"all"`` for every head)
        gives any number of views: :meth:`HeadAttention.scores` for a subset of the heads,
        :meth:`HeadAttention.head_scores` for each head alone. ``score``, ``score_head_sets`` and
        ``head_scores`` are such views.

        :meth:`score` is ``att.scores()`` fused with the config's ``prior`` (none here).

        Example:
            >>> s = QRScorer(prior="none")
            >>> att = s.head_attention("Which fruit has potassium?", ["Paris.", "Bananas have potassium."])
            >>> att.scores() == s.score("Which fruit has potassium?", ["Paris.", "Bananas have potassium."])
            True
        """
        query = check_query(query)
        layout = self._layout(layout)
        norm = self._normalize(chunks)
        return self._attention(query, norm, self.head_plan(heads), layout)

    def score(self, query: str, chunks: Sequence[Chunk], *, layout: str | None = None) -> list[float]:
        """One relevance score per chunk, aligned with the input (higher is more relevant).

        Args:
            query: the question or search text.
            chunks: strings, ``(title, text)`` pairs, or mappings with ``"text"`` (and ``"title"``).
            layout: how the chunks are written into the prompt: ``"input"``, ``"reversed"`` (the first
                chunk next to the query: right for best-first retriever output) or ``"both"`` (two passes,
                scores averaged); ``None`` takes :attr:`ScorerConfig.layout`. Scores stay in input order.

        Returns:
            Plain Python floats; ``[]`` for no chunks. Under ``prior="bm25"`` (the default) they lie in [0, 1].

        Raises:
            ValueError: the query is empty.
            TypeError: the query is not a string, or a chunk has an unsupported type (its index is named).

        Example:
            >>> QRScorer().score("capital of France?", ["Paris is the capital of France.", "Cats purr."])  # doctest: +SKIP
            [0.41..., 0.02...]
        """
        query = check_query(query)
        layout = self._layout(layout)
        norm = self._normalize(chunks)
        if not norm:
            return []
        return self._scores(query, norm, layout)

    def _scores(self, query: str, norm: Sequence[tuple[str | None, str]], layout: str,
                show_progress: bool | None = None) -> list[float]:
        """:meth:`score` over normalized chunks (tournament rounds included)."""
        plan = self.head_plan()
        cfg = self.config
        scores = final_scores(self._attention(query, norm, plan, layout, show_progress), norm, cfg.outlier_std,
                              lambda sub: self._attention(query, sub, plan, layout, show_progress))
        return with_prior(scores, query, self._texts(norm), cfg.prior, cfg.prior_weight)

    def score_head_sets(
        self, query: str, chunks: Sequence[Chunk], head_sets: Sequence[HeadSpec], *, layout: str | None = None
    ) -> list[list[float]]:
        """Scores under several head sets from one forward pass over the union of their heads.

        Each set is aggregated exactly as :meth:`score` would with ``heads=<that set>``: cheap comparisons
        of head sets (detected vs all vs random) on the same inputs.

        Example:
            >>> all_s, two = QRScorer().score_head_sets("q?", ["a", "b"], ["all", "3-1,12-4"])  # doctest: +SKIP
        """
        query = check_query(query)
        layout = self._layout(layout)
        norm = self._normalize(chunks)
        lm = self.loaded
        resolved = [HeadSet.parse(h).resolve(lm.num_layers, lm.num_heads) for h in head_sets]
        if not norm:
            return [[] for _ in resolved]
        union = HeadSet(heads=tuple(sorted(set().union(*map(set, resolved)))))
        att = self._attention(query, norm, self.head_plan(union), layout)
        return att.head_set_scores([HeadSet(heads=r) for r in resolved], self.config.outlier_std)

    def head_scores(
        self, query: str, chunks: Sequence[Chunk], heads: HeadSpec = "all", *, layout: str | None = None
    ) -> HeadScores:
        """Per-head chunk scores (every head by default): the raw material of head detection.

        Example:
            >>> hs = QRScorer().head_scores("capital of France?", ["Paris is the capital.", "Cats purr."])  # doctest: +SKIP
            >>> hs.scores.shape  # doctest: +SKIP
            torch.Size([270, 2])
        """
        query = check_query(query)
        layout = self._layout(layout)
        norm = self._normalize(chunks)
        plan = self.head_plan(HeadSet.parse(heads))
        if not norm:
            empty = torch.zeros(len(plan.heads), 0, dtype=torch.float64)
            return HeadScores(plan.heads, empty, empty)
        return self._attention(query, norm, plan, layout).head_scores(self.config.outlier_std)

    def rank(
        self, query: str, chunks: Sequence[Chunk], top_n: int | None = None, *, layout: str | None = None
    ) -> RankedResults:
        """Chunks best first (ties keep input order), optionally only the best ``top_n``.

        Example:
            >>> r = QRScorer().rank("Which fruit has potassium?", ["Paris.", "Bananas have potassium."])  # doctest: +SKIP
            >>> r[0].index, r[0].rank  # doctest: +SKIP
            (1, 1)
        """
        check_positive("top_n", top_n)
        items_in = self._chunk_list(chunks)  # once: an iterator must not be consumed twice
        norm = self._normalize(items_in)
        scores = self.score(query, items_in, layout=layout)
        return ranked(query, norm, scores, top_n)

    def trim(
        self,
        query: str,
        text_or_chunks: str | Sequence[Chunk],
        max_tokens: int | None = None,
        top_n: int | None = None,
        keep_order: bool = True,
        *,
        layout: str | None = None,
    ) -> TrimResult:
        """Keep the chunks that matter for ``query``, within a token budget and/or a count.

        A string is split into chunks (paragraphs, then sentences, up to ``chunk_size`` tokens); a list is
        taken as the chunks. Chunks are taken best first; one that would overflow ``max_tokens`` is skipped
        and smaller ones after it may still fit. ``keep_order`` returns the kept chunks in input order.

        Example:
            >>> doc = "Bananas are rich in potassium.\\n\\nParis is in France.\\n\\nThe sky is blue."
            >>> QRScorer().trim("Which fruit has potassium?", doc, top_n=1).text  # doctest: +SKIP
            'Bananas are rich in potassium.'
        """
        check_positive("max_tokens", max_tokens)
        check_positive("top_n", top_n)
        query = check_query(query)
        chunks = self._trim_chunks(text_or_chunks)
        norm = self._normalize(chunks)
        texts = self._texts(norm)
        scores = self.score(query, chunks, layout=layout) if norm else []
        counts = [self.count_tokens(t) for t in texts]
        return trimmed(query, texts, scores, counts, max_tokens, top_n, keep_order)

    def context(
        self,
        text_or_chunks: str | Sequence[Chunk],
        *,
        heads: HeadSpec = None,
        layout: str | None = None,
        query_tokens: int | None = None,
        show_progress: bool | None = None,
        kv_dtype: str | None = None,
    ) -> PreparedContext:
        """Prepare ``text_or_chunks`` once and ask it any number of questions, each at the cost of its own tokens.

        The chunks are encoded once: every window's prefix runs to the deepest selected layer, with the
        null-query calibration and the instruction rows every question shares. ``ctx.score(query)``,
        ``ctx.rank(query)`` and ``ctx.trim(query)`` then equal :meth:`score`, :meth:`rank` and :meth:`trim`
        over the same chunks (to 1e-5 of the largest score, same ranking), running only the question's
        tail over the cached prefix.

        Args:
            text_or_chunks: a list of chunks, or a string split as :meth:`trim` splits it.
            heads: the heads to read (this scorer's head set when ``None``).
            layout: as in :meth:`score` (``"both"`` prepares two prefixes per window).
            query_tokens: question tokens each window keeps room for (default :attr:`query_reserve`, which
                plain calls use too; a longer question is refused with a clear error).
            show_progress: a progress bar while preparing (default: the config's ``show_progress``).
            kv_dtype: ``None`` (the model's dtype: scores equal the plain calls), or ``"float16"`` /
                ``"bfloat16"`` to store the KV cache at half of float32's size. Each question then works on
                one window at a time cast back to full precision, and its scores differ slightly from a
                plain call's (measured in docs/benchmarks.md).

        Memory: the KV cache of the layers up to the deepest selected head, ``ctx.bytes_per_token`` bytes per
        prompt token (``ctx.nbytes`` in all); free it with ``ctx.close()`` or a ``with`` block.

        Example:
            >>> scorer = QRScorer()
            >>> chunks = ["The Eiffel Tower is in Paris.", "Bananas are rich in potassium."]
            >>> with scorer.context(chunks) as ctx:
            ...     ctx.rank("Which fruit has potassium?").indices, ctx.rank("Where is the tower?").indices
            ([1, 0], [0, 1])
        """
        check_positive("query_tokens", query_tokens)
        chunks = self._trim_chunks(text_or_chunks)
        norm = self._normalize(chunks)
        return PreparedContext(self, norm, self.head_plan(heads), self._layout(layout),
                               self.query_reserve if query_tokens is None else query_tokens, show_progress,
                               kv_dtype=kv_dtype)

    def score_batch(
        self,
        queries: Sequence[str],
        chunk_lists: Sequence[Sequence[Chunk]],
        *,
        layout: str | None = None,
        show_progress: bool | None = None,
    ) -> list[list[float]]:
        """Scores for many independent ``(query, chunks)`` pairs, equal to calling :meth:`score` on each.

        Pairs that share the same chunk list share one prepared context (each further question costs only
        its own tokens); the rest run one at a time. One progress bar counts the pairs. On a GPU this is the
        same loop: pairs are not padded into batched forward passes.

        Args:
            queries: one query per pair.
            chunk_lists: one chunk list per pair (``len(chunk_lists) == len(queries)``).
            layout: as in :meth:`score`.
            show_progress: a progress bar over the pairs (default: the config's ``show_progress``).

        Example:
            >>> s = QRScorer()
            >>> chunks = ["Paris is in France.", "Bananas have potassium."]
            >>> out = s.score_batch(["Which fruit?", "Which city?"], [chunks, chunks])
            >>> [max(range(2), key=row.__getitem__) for row in out]
            [1, 0]
        """
        queries = [check_query(q) for q in self._chunk_list(queries, "queries")]
        lists = self._chunk_list(chunk_lists, "chunk_lists")
        if len(lists) != len(queries):
            raise ValueError(
                f"score_batch needs one chunk list per query: got {len(queries)} queries and {len(lists)} chunk "
                "lists; repeat a shared list ([chunks] * len(queries)) to ask several questions of it"
            )
        layout = self._layout(layout)
        norms = [self._normalize(c) for c in lists]
        groups: dict[tuple[tuple[str | None, str], ...], list[int]] = {}
        for i, norm in enumerate(norms):
            groups.setdefault(tuple(norm), []).append(i)
        out: list[list[float]] = [[] for _ in queries]
        show = self.config.show_progress if show_progress is None else show_progress
        progress = None
        if show:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(queries), desc=f"scoring {len(queries)} pairs", unit="pair")
        try:
            for norm_key, members in groups.items():
                norm = list(norm_key)
                room = self._room(None)
                fits = [i for i in members if len(self.loaded.builder.query_span_ids(queries[i])) <= room]
                if norm and len(fits) > 1:
                    with PreparedContext(self, norm, self.head_plan(), layout, self.query_reserve, False) as ctx:
                        for i in fits:
                            out[i] = ctx.score(queries[i])
                            if progress is not None:
                                progress.update(1)
                for i in members:
                    if norm and len(fits) > 1 and i in fits:
                        continue
                    out[i] = self._scores(queries[i], norm, layout, show_progress=False) if norm else []
                    if progress is not None:
                        progress.update(1)
        finally:
            if progress is not None:
                progress.close()
        return out

    def rank_batch(
        self,
        queries: Sequence[str],
        chunk_lists: Sequence[Sequence[Chunk]],
        top_n: int | None = None,
        *,
        layout: str | None = None,
        show_progress: bool | None = None,
    ) -> list[RankedResults]:
        """:meth:`rank` for many ``(query, chunks)`` pairs, through :meth:`score_batch`.

        Example:
            >>> s = QRScorer()
            >>> chunks = ["Paris is in France.", "Bananas have potassium."]
            >>> [r.indices for r in s.rank_batch(["Which fruit?", "Which city?"], [chunks, chunks], top_n=1)]
            [[1], [0]]
        """
        check_positive("top_n", top_n)
        lists = [self._chunk_list(c) for c in self._chunk_list(chunk_lists, "chunk_lists")]
        scores = self.score_batch(queries, lists, layout=layout, show_progress=show_progress)
        return [ranked(q, self._normalize(c), s, top_n) for q, c, s in zip(queries, lists, scores, strict=True)]

    # ------------------------------------------------------------------ input
    def _layout(self, layout: str | None) -> str:
        return check_layout(self.config.layout if layout is None else layout)

    def _trim_chunks(self, text_or_chunks: str | Sequence[Chunk]) -> list[Chunk]:
        """A string split as :meth:`trim` splits it, or the chunk list."""
        if isinstance(text_or_chunks, str):
            return list(split_text(text_or_chunks, self.config.chunk_size, self.count_tokens))
        return self._chunk_list(text_or_chunks)

    @staticmethod
    def _texts(norm: Sequence[tuple[str | None, str]]) -> list[str]:
        return [(f"{t}\n{x}" if t else x) for t, x in norm]

    @staticmethod
    def _chunk_list(chunks: Any, name: str = "chunks") -> list[Any]:
        """``chunks`` as a list (any ordered iterable), or a TypeError saying what was passed."""
        if isinstance(chunks, str):
            if name != "chunks":
                raise TypeError(f"{name} must be a list, not one string")
            raise TypeError("chunks must be a list of chunks, not one string; use trim() to split a long text")
        if isinstance(chunks, (Mapping, Set)):  # iterating would give keys, or an order scores cannot follow
            raise TypeError(f"{name} must be an ordered list{' of chunks' if name == 'chunks' else ''}, "
                            f"got {type(chunks).__name__}")
        try:
            return list(chunks)
        except TypeError as exc:
            raise TypeError(f"{name} must be a list, got {type(chunks).__name__}") from exc

    @staticmethod
    def _normalize(chunks: Sequence[Chunk]) -> list[tuple[str | None, str]]:
        return [normalize_chunk(c, i) for i, c in enumerate(QRScorer._chunk_list(chunks))]

    def __repr__(self) -> str:
        cfg = self.config
        return f"QRScorer(model={cfg.model or 'embedded'!r}, heads={cfg.heads or 'default'!r}, device={cfg.device!r})"

