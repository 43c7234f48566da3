"""QRScorer: score, rank and trim chunks with query-focused retrieval heads (QRHead, arXiv 2506.09944).

A facade: construction and configuration here, every score through :class:`~.pipeline.Pipeline` (plan,
prefill, tails, aggregation: the method step by step is described there). A plain call is a prepared
context used once, so :meth:`QRScorer.score` and :meth:`QRScorer.context` cannot disagree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from .aggregate import HeadAttention, HeadScores, ranked, trimmed
from .config import ScorerConfig
from .context import PreparedContext
from .engine import ForwardEngine, HeadPlan, PrefixCache
from .heads import HeadSet, HeadSpec, default_head_set_for
from .layout import check_layout
from .models import LoadedModel, load_model
from .pipeline import Pipeline, chunk_texts
from .prompt import Chunk, as_list, normalize_chunks
from .results import RankedResults, TrimResult
from .validate import check_config, check_positive, check_query
from .windows import ScorerOutOfMemoryError, Unit

__all__ = ["HeadAttention", "HeadScores", "QRScorer", "ScorerOutOfMemoryError"]


class QRScorer:
    """Zero-shot relevance scores from a decoder LLM's query-focused retrieval heads.

    Args:
        model: hub id, local folder or ``.gguf`` path; ``None`` for the embedded SmolLM2-135M-Instruct.
        heads: the head set (see :class:`HeadSet`); ``None`` for the model's shipped default.
        device, dtype: ``"auto"``, ``"cpu"``, ``"cuda"``, ...; ``"auto"``, ``"float32"``, ``"bfloat16"``, ...
        config: a :class:`ScorerConfig` (or dict/path); explicit arguments override its fields.
        **options: any other :class:`ScorerConfig` field (``max_context_tokens``, ``layout``,
            ``cross_window``, ``prefix_cache_mb``, ``num_threads``, and the position corrections
            ``calibration``, ``orders``, ``prior``, ``prior_weight``, ``prior_weight_long``: see docs/position.md).

    The model loads on first use and is shared by every scorer of the same model, device and dtype. A bad
    model path or package (:class:`ModelLoadError`), device (:class:`DeviceError`) or head set
    (:class:`HeadSetError`, when the model's shape is known unloaded) fails here (:func:`check_config`).

    Example:
        >>> from qr_integrations import QRScorer
        >>> scorer = QRScorer()  # embedded SmolLM2-135M-Instruct on the CPU
        >>> chunks = ["The Eiffel Tower is in Paris.", "Bananas are rich in potassium."]
        >>> scorer.rank("Which fruit has potassium?", chunks).indices
        [1, 0]
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, heads: HeadSpec = None, device: str = "auto",
                 dtype: str = "auto", config: ScorerConfig | dict[str, Any] | str | None = None,
                 **options: Any) -> None:
        self.config = ScorerConfig.merge(config, model=model, heads=heads, device=device, dtype=dtype, **options)
        self._explicit_heads = HeadSet.parse(heads) if heads is not None else None
        self._loaded: LoadedModel | None = None
        self._heads: HeadSet | None = None
        self._pipeline: Pipeline | None = None
        self._prefix_cache = PrefixCache(int(self.config.prefix_cache_mb * 2**20)) if self.config.prefix_cache_mb else None
        check_config(self.config, self._explicit_heads)  # a bad model, device or head set fails here

    @classmethod
    def from_config(cls, config: ScorerConfig | dict[str, Any] | str | os.PathLike[str]) -> QRScorer:
        """Build a scorer from a :class:`ScorerConfig`, a dict, YAML/JSON text or a config file path.

        Example: ``QRScorer.from_config({"heads": "all", "max_context_tokens": 2048})``."""
        return cls(config=ScorerConfig.load(config))

    @property
    def loaded(self) -> LoadedModel:
        """The shared loaded model (loads it on first access)."""
        if self._loaded is None:
            c = self.config
            self._loaded = load_model(c.model, c.device, c.dtype, c.cache_dir, c.show_progress, quantize=c.quantize)
        return self._loaded

    @property
    def head_set(self) -> HeadSet:
        """The head set in use (the model's default when none was given)."""
        if self._heads is None:
            hs = self._explicit_heads if self._explicit_heads is not None else self.config.head_set()
            self._heads = hs if hs is not None else default_head_set_for(self.loaded.name)
            self._heads.resolve(self.loaded.num_layers, self.loaded.num_heads)  # fail early on a bad set
        return self._heads

    @property
    def pipeline(self) -> Pipeline:
        """The scoring pipeline every call goes through (built on first use)."""
        if self._pipeline is None:
            self._pipeline = Pipeline(self.loaded, self.config, self._prefix_cache)
        return self._pipeline

    @property
    def engine(self) -> ForwardEngine:
        """The forward engine every pass goes through; assign a subclass to watch or fail passes."""
        return self.pipeline.engine

    @engine.setter
    def engine(self, engine: ForwardEngine) -> None:
        self.pipeline.engine = engine

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
        return self.pipeline.window_tokens

    @property
    def query_reserve(self) -> int:
        """Query tokens every window keeps room for (64, at most 1/16 of a window)."""
        return self.pipeline.query_reserve

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` as plain user text under the model's tokenizer.

        Example: ``QRScorer().count_tokens("hello world")`` is 2."""
        return self.loaded.builder.plain_token_count(text)

    def window_plan(self, chunks: Sequence[Chunk], query: str | None = None, *,
                    every_pass: bool = False) -> list[list[Unit]]:
        """How ``chunks`` (in the order given) are packed into forward passes for ``query``.

        A window is a list of :class:`~.windows.Unit` (``owner``: the chunk's index); ``query=None`` plans for
        any query within :attr:`query_reserve`; ``every_pass=True`` adds every covering's windows.

        Example:
            >>> s = QRScorer(max_context_tokens=128)
            >>> [[u.owner for u in w] for w in s.window_plan(["Bananas have potassium."] * 6, every_pass=True)]
            [[0, 1, 2, 3, 4], [5], [2, 3, 4, 5, 0], [1]]
        """
        norm, query = normalize_chunks(chunks), None if query is None else check_query(query)
        coverings = self.pipeline.coverings(norm, self.pipeline.room(query)) if norm else []
        return [w for c in coverings for w in c] if every_pass else (coverings[0] if coverings else [])

    def head_attention(self, query: str, chunks: Sequence[Chunk], heads: HeadSpec = None, *,
                       layout: str | None = None) -> HeadAttention:
        """The per-head calibrated attention of ``query`` over ``chunks`` (``heads``: this scorer's, or e.g.
        ``"all"``): every score derives from it; :meth:`score` is ``att.scores()`` with the ``prior`` fused.

        Example:
            >>> s, chunks = QRScorer(prior="none"), ["Paris.", "Bananas have potassium."]
            >>> s.head_attention("Which fruit?", chunks).scores() == s.score("Which fruit?", chunks)
            True
        """
        query = check_query(query)
        return self.pipeline.attention(query, normalize_chunks(chunks), self.head_plan(heads), self._layout(layout))

    def score(self, query: str, chunks: Sequence[Chunk], *, layout: str | None = None) -> list[float]:
        """One relevance score per chunk, aligned with the input (higher is more relevant).

        ``chunks``: strings, ``(title, text)`` pairs, or mappings with ``"text"`` (and ``"title"``).
        ``layout``: ``"input"``, ``"reversed"`` (first chunk next to the query: for best-first retriever
        output) or ``"both"`` (two passes averaged); ``None`` takes the config's. Returns plain floats
        (in [0, 1] under a prior: ``prior="dense"``, the default). Copies of one chunk share one score (``dedupe``).
        ``ValueError``: empty query; ``TypeError``: a bad chunk (its index named).

        Example:
            >>> s = QRScorer().score("capital of France?", ["Paris is the capital of France.", "Cats purr."])
            >>> s[0] > s[1]
            True
        """
        query, layout, norm = check_query(query), self._layout(layout), normalize_chunks(chunks)
        return self.pipeline.scores(query, norm, self.head_plan(), layout) if norm else []

    def score_head_sets(self, query: str, chunks: Sequence[Chunk], head_sets: Sequence[HeadSpec], *,
                        layout: str | None = None) -> list[list[float]]:
        """Scores under several head sets from one pass over the union of their heads (no prior).

        Example:
            >>> all_s, two = QRScorer().score_head_sets("Which fruit?", ["Paris.", "Bananas."], ["all", "3-1,12-4"])
        """
        lm = self.loaded
        resolved = [HeadSet.parse(h).resolve(lm.num_layers, lm.num_heads) for h in head_sets]
        union = HeadSet(heads=tuple(sorted(set().union(*map(set, resolved)))))
        att = self.head_attention(query, chunks, union, layout=layout)
        if att.num_chunks == 0:
            return [[] for _ in resolved]
        return att.head_set_scores([HeadSet(heads=r) for r in resolved], self.config.outlier_std)

    def head_scores(self, query: str, chunks: Sequence[Chunk], heads: HeadSpec = "all", *,
                    layout: str | None = None) -> HeadScores:
        """Per-head chunk scores (every head by default): the raw material of head detection.

        Example:
            >>> QRScorer().head_scores("capital of France?", ["Paris is the capital.", "Cats purr."]).scores.shape
            torch.Size([270, 2])
        """
        att = self.head_attention(query, chunks, HeadSet.parse(heads), layout=layout)
        if att.num_chunks == 0:
            empty = torch.zeros(len(att.heads), 0, dtype=torch.float64)
            return HeadScores(att.heads, empty, empty)
        return att.head_scores(self.config.outlier_std)

    def rank(self, query: str, chunks: Sequence[Chunk], top_n: int | None = None, *,
             layout: str | None = None) -> RankedResults:
        """Chunks best first (ties keep input order), optionally only the best ``top_n``.

        Example:
            >>> QRScorer().rank("Which fruit has potassium?", ["Paris.", "Bananas have potassium."]).indices
            [1, 0]
        """
        check_positive("top_n", top_n)
        items = as_list(chunks)  # once: an iterator must not be consumed twice
        return ranked(query, normalize_chunks(items), self.score(query, items, layout=layout), top_n)

    def trim(self, query: str, text_or_chunks: str | Sequence[Chunk], max_tokens: int | None = None,
             top_n: int | None = None, keep_order: bool = True, *, layout: str | None = None) -> TrimResult:
        """Keep the chunks that matter for ``query``, within a token budget and/or a count.

        A string is split into chunks of up to ``chunk_size`` tokens. Best first, a chunk that would overflow
        ``max_tokens`` is skipped (smaller ones may still fit); ``keep_order`` keeps the input order.

        Example:
            >>> doc = "Bananas are rich in potassium.\\n\\nParis is in France.\\n\\nThe sky is blue."
            >>> QRScorer().trim("Which fruit has potassium?", doc, top_n=1).text
            'Bananas are rich in potassium.'
        """
        check_positive("max_tokens", max_tokens)
        check_positive("top_n", top_n)
        query = check_query(query)
        chunks = self.pipeline.chunks_of(text_or_chunks)
        texts = chunk_texts(normalize_chunks(chunks))
        scores = self.score(query, chunks, layout=layout) if texts else []
        return trimmed(query, texts, scores, [self.count_tokens(t) for t in texts], max_tokens, top_n, keep_order)

    def context(self, text_or_chunks: str | Sequence[Chunk], *, heads: HeadSpec = None, layout: str | None = None,
                query_tokens: int | None = None, show_progress: bool | None = None,
                kv_dtype: str | None = None) -> PreparedContext:
        """Prepare ``text_or_chunks`` once and ask it any number of questions, each at the cost of its own tokens.

        ``ctx.score/rank/trim(query)`` equal these methods over the same chunks (to 1e-5 of the largest
        score). ``query_tokens``: question room per window (default :attr:`query_reserve`; longer questions
        are refused). ``kv_dtype="float16"``/``"bfloat16"`` halves the KV cache (scores differ slightly).
        Memory: ``ctx.nbytes``; free it with ``ctx.close()`` or a ``with`` block.

        Example:
            >>> with QRScorer().context(["The Eiffel Tower is in Paris.", "Bananas are rich in potassium."]) as ctx:
            ...     ctx.rank("Which fruit has potassium?").indices, ctx.rank("Where is the tower?").indices
            ([1, 0], [0, 1])
        """
        check_positive("query_tokens", query_tokens)
        norm = normalize_chunks(self.pipeline.chunks_of(text_or_chunks))
        return PreparedContext(self.pipeline, norm, self.head_plan(heads), self._layout(layout),
                               self.query_reserve if query_tokens is None else query_tokens, show_progress,
                               kv_dtype=kv_dtype)

    def score_batch(self, queries: Sequence[str], chunk_lists: Sequence[Sequence[Chunk]], *,
                    layout: str | None = None, show_progress: bool | None = None) -> list[list[float]]:
        """Scores for many independent ``(query, chunks)`` pairs, as :meth:`score` gives each.

        Pairs that share a chunk list share one prefill; the rest run one at a time. One bar counts pairs.

        Example:
            >>> s, chunks = QRScorer(), ["Paris is in France.", "Bananas have potassium."]
            >>> [max(range(2), key=row.__getitem__) for row in s.score_batch(["Which fruit?", "Which city?"], [chunks] * 2)]
            [1, 0]
        """
        queries = [check_query(q) for q in as_list(queries, "queries")]
        lists = [normalize_chunks(c) for c in as_list(chunk_lists, "chunk_lists")]
        show = self.config.show_progress if show_progress is None else show_progress
        return self.pipeline.score_batch(queries, lists, self.head_plan(), self._layout(layout), show)

    def rank_batch(self, queries: Sequence[str], chunk_lists: Sequence[Sequence[Chunk]], top_n: int | None = None,
                   *, layout: str | None = None, show_progress: bool | None = None) -> list[RankedResults]:
        """:meth:`rank` for many ``(query, chunks)`` pairs, through :meth:`score_batch`.

        Example:
            >>> s, chunks = QRScorer(), ["Paris is in France.", "Bananas have potassium."]
            >>> [r.indices for r in s.rank_batch(["Which fruit?", "Which city?"], [chunks, chunks], top_n=1)]
            [[1], [0]]
        """
        check_positive("top_n", top_n)
        lists = [as_list(c) for c in as_list(chunk_lists, "chunk_lists")]
        scores = self.score_batch(queries, lists, layout=layout, show_progress=show_progress)
        return [ranked(q, normalize_chunks(c), s, top_n) for q, c, s in zip(queries, lists, scores, strict=True)]

    def _layout(self, layout: str | None) -> str:
        return check_layout(self.config.layout if layout is None else layout)

    def __repr__(self) -> str:
        cfg = self.config
        return f"QRScorer(model={cfg.model or 'embedded'!r}, heads={cfg.heads or 'default'!r}, device={cfg.device!r})"
