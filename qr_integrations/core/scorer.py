"""QRScorer: score, rank and trim chunks with query-focused retrieval heads.

The method (QRHead, arXiv 2506.09944), as steps of this module:

1. prompt -> spans (:mod:`.prompt`);
2. forward with capture (:mod:`.capture`): the prefix (template + chunks) runs once and fills a KV cache,
   stopping after the deepest selected layer; the query span then runs over that cache and the attention
   of its rows over the context is captured for the selected heads;
3. calibrate: the null query (``"N/A"``) runs over the same cache (cropped back after the query), and
   its attention is subtracted; the instruction rows the two share are captured once, at the end of the
   prefix pass, so only the differing tails run again;
4. aggregate: the selected heads' calibrated vectors are summed;
5. per chunk: tokens below ``mean - 2 std`` of the chunk are dropped, the rest summed.

Inputs longer than ``max_context_tokens`` are scored in windows of whole chunks, each with its own null
calibration; a chunk longer than a window is cut into pieces and scored by its best piece.  A window that
runs out of CUDA memory is split in two and retried (a single piece is cut smaller), down to a floor
where :class:`ScorerOutOfMemoryError` says what to change.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from .capture import CaptureState, EarlyExit, capturing
from .chunking import split_text
from .config import ScorerConfig
from .heads import Head, HeadSet, HeadSpec, default_head_set_for
from .layout import check_layout, layout_orders
from .models import LoadedModel, load_model, locate_model, model_shape, resolve_device, resolve_dtype
from .prompt import SEPARATOR, Chunk, EncodedPrompt, chunk_block, normalize_chunk
from .results import RankedChunk, RankedResults, TrimResult

_WINDOW_MARGIN = 8  # tokens kept free in each window for tokenization effects at block boundaries
_MIN_PIECE_TOKENS = 16  # out of memory on a piece shorter than twice this: give up with a clear error

logger = logging.getLogger(__name__)


class ScorerOutOfMemoryError(torch.cuda.OutOfMemoryError):
    """A single window still ran out of accelerator memory after splitting it down to the smallest piece.

    It subclasses ``torch.OutOfMemoryError``, so code that already catches that keeps working.
    """


def _free_accelerator_memory(device: torch.device) -> None:
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


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
class _Unit:
    owner: int  # index of the input chunk
    title: str | None
    text: str
    cost: int


def _check_query(query: Any) -> str:
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise ValueError("query is empty; pass the question or search text to score chunks against")
    return query


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


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
    shape = model_shape(config.model)
    if shape is not None:
        head_set = heads if heads is not None else config.head_set()
        if head_set is None:
            head_set = default_head_set_for(locate_model(config.model)[1])
        head_set.resolve(*shape)
    return shape


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to ``num_threads`` (``None``: unchanged).

    Example:
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
    """
    if num_threads is None:
        yield
        return
    before = torch.get_num_threads()
    if before != num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def select_within_budget(
    scores: Sequence[float], counts: Sequence[int], max_tokens: int | None, top_n: int | None = None
) -> list[int]:
    """Indices that :meth:`QRScorer.trim` keeps: best first (ties by position), at most ``top_n``, and a
    chunk that would overflow ``max_tokens`` is skipped while smaller ones after it may still fit.

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
            ``layout``, ``num_threads``).

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
        # a bad model path, device, dtype or head set fails here, not at the first query
        check_config(self.config, self._explicit_heads)

    @classmethod
    def from_config(cls, config: ScorerConfig | dict[str, Any] | str | os.PathLike[str]) -> QRScorer:
        """Build a scorer from a :class:`ScorerConfig`, a dict, YAML/JSON text or a config file path.

        Example:
            >>> scorer = QRScorer.from_config({"heads": "all", "max_context_tokens": 2048})
        """
        return cls(config=ScorerConfig.load(config))

    # ------------------------------------------------------------------ model & heads
    @property
    def loaded(self) -> LoadedModel:
        """The shared loaded model (loads it on first access)."""
        if self._loaded is None:
            cfg = self.config
            self._loaded = load_model(cfg.model, cfg.device, cfg.dtype, cfg.cache_dir, show_progress=cfg.show_progress)
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

    def _head_plan(self, heads: HeadSet | None = None) -> tuple[tuple[Head, ...], dict[int, torch.Tensor], int]:
        lm = self.loaded
        resolved = (heads or self.head_set).resolve(lm.num_layers, lm.num_heads)
        by_layer: dict[int, list[int]] = {}
        for layer, head in resolved:
            by_layer.setdefault(layer, []).append(head)
        order: list[Head] = []
        tensors: dict[int, torch.Tensor] = {}
        for layer in sorted(by_layer):
            tensors[layer] = torch.tensor(by_layer[layer], dtype=torch.long, device=lm.device)
            order.extend((layer, h) for h in by_layer[layer])
        return tuple(order), tensors, max(by_layer)

    @property
    def window_tokens(self) -> int:
        """The most tokens in one forward pass."""
        cap = self.config.max_context_tokens
        return min(cap, self.loaded.max_positions) if cap else self.loaded.max_positions

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` as plain user text under the model's tokenizer.

        Example:
            >>> QRScorer().count_tokens("hello world") > 0
            True
        """
        return self.loaded.builder.plain_token_count(text)

    # ------------------------------------------------------------------ forward
    def _run(self, ids: list[list[int]], cache: Any) -> None:
        lm = self.loaded
        tensor = torch.tensor(ids, dtype=torch.long, device=lm.device)
        try:
            lm.model(input_ids=tensor, use_cache=True, **{lm.cache_kwarg: cache})
        except EarlyExit:
            pass

    def _window_vectors(self, query: str, units: Sequence[_Unit], plan: Any) -> tuple[torch.Tensor, EncodedPrompt]:
        """Calibrated per-head attention over one window's prefix: ``(heads, prefix_tokens)``."""
        from transformers import DynamicCache

        lm = self.loaded
        _, tensors, deepest = plan
        enc = lm.builder.encode(query, [(u.title, u.text) for u in units], null_query=self.config.null_query)
        prefix_len = len(enc.prefix_ids)
        suffixes = [enc.query_ids, enc.null_ids] if self.config.calibrate else [enc.query_ids]
        # The query span's leading instruction is the same tokens for the query and the null query, and
        # causal attention gives its rows the same values in both: capture them once, at the end of the
        # prefix pass. Then each tail (query text or null query, and the turn end) runs over the cache,
        # which is cropped back to the shared part in between. (Batching the two tails would save a pass
        # but needs a second copy of the cache: twice the memory for the same result.)
        shared = 0
        limit = min(len(ids) for ids in suffixes) - 1
        while shared < limit and all(ids[shared] == suffixes[0][shared] for ids in suffixes):
            shared += 1
        head_ids = enc.prefix_ids + enc.query_ids[:shared]
        state = CaptureState(heads_by_layer=tensors, context_len=prefix_len, stop_after_layer=deepest,
                             capture=shared > 0, total_len=len(head_ids), rows=((prefix_len, len(head_ids)),))
        order = sorted(tensors)
        means = []
        with lm.lock, torch_threads(self.config.num_threads), torch.inference_mode(), capturing(state):
            cache = DynamicCache(config=lm.model.config)
            cache.activate_past_recording()  # sliding-window layers keep their past so the crop below works
            self._run([head_ids], cache)
            common = torch.cat([state.out[layer] for layer in order], dim=1)[0] if shared else 0.0
            state.capture, state.rows = True, None
            for i, ids in enumerate(suffixes):
                if i:
                    cache.crop(-(len(suffixes[i - 1]) - shared))
                state.out = {}
                state.total_len = len(head_ids) + len(ids) - shared
                self._run([ids[shared:]], cache)
                tail = torch.cat([state.out[layer] for layer in order], dim=1)[0]
                means.append((common + tail) / len(ids))
            del cache
        query_att = means[0] - means[1] if self.config.calibrate else means[0]
        return query_att, enc

    # ------------------------------------------------------------------ windows
    def _units(self, query: str, chunks: Sequence[tuple[str | None, str]]) -> tuple[list[_Unit], int]:
        lm = self.loaded
        builder = lm.builder
        overhead = builder.overhead_tokens(query, self.config.null_query)
        capacity = self.window_tokens - overhead - _WINDOW_MARGIN
        if capacity < 32:
            raise ValueError(
                f"the query needs {overhead} prompt tokens, leaving no room for chunks in a {self.window_tokens}-token "
                "window; shorten the query or raise max_context_tokens"
            )
        units: list[_Unit] = []
        for i, (title, text) in enumerate(chunks):
            cost = builder.plain_token_count(SEPARATOR + chunk_block(len(chunks), title, text)) + 1
            if cost <= capacity:
                units.append(_Unit(i, title, text, cost))
                continue
            # a chunk longer than a window: cut it into pieces of whole tokens, each a unit of its own
            title_cost = builder.plain_token_count(SEPARATOR + chunk_block(len(chunks), title, "")) + 2
            if title and title_cost > capacity // 4:  # a title too long to repeat on every piece: cut it too
                title, text = None, f"{title}\n{text}"
                title_cost = builder.plain_token_count(SEPARATOR + chunk_block(len(chunks), None, "")) + 2
            units.extend(self._cut(_Unit(i, title, text, cost), title_cost, max(16, (capacity - title_cost) // 2)))
        return units, capacity

    def _cut(self, unit: _Unit, title_cost: int, step: int) -> list[_Unit]:
        """``unit`` cut into pieces of at most ``step`` text tokens (on token boundaries)."""
        offsets = self.loaded.builder.plain_encode(unit.text)["offset_mapping"]
        if not offsets:
            return [unit]
        pieces = []
        for start in range(0, len(offsets), step):
            piece_offsets = offsets[start : start + step]
            piece = unit.text[piece_offsets[0][0] : piece_offsets[-1][1]]
            pieces.append(_Unit(unit.owner, unit.title, piece, title_cost + len(piece_offsets)))
        return pieces

    def _split_after_oom(self, window: list[_Unit], message: str) -> list[list[_Unit]]:
        """Two smaller windows for one that ran out of memory, or :class:`ScorerOutOfMemoryError`."""
        if len(window) > 1:
            half = len(window) // 2
            return [window[:half], window[half:]]
        unit = window[0]
        text_tokens = self.loaded.builder.plain_token_count(unit.text)
        if text_tokens >= 2 * _MIN_PIECE_TOKENS:
            step = (text_tokens + 1) // 2
            pieces = self._cut(unit, max(0, unit.cost - text_tokens), step)
            if len(pieces) > 1:
                return [[p] for p in pieces]
        raise ScorerOutOfMemoryError(
            f"out of memory scoring one piece of chunk {unit.owner} ({unit.cost} tokens) even after splitting its "
            f"window down to that piece: lower max_context_tokens (now {self.window_tokens}), use a smaller dtype "
            f"(dtype='bfloat16' or 'float16'), fewer heads, or device='cpu'. ({message})"
        )

    @staticmethod
    def _pack(units: list[_Unit], capacity: int) -> list[list[_Unit]]:
        windows: list[list[_Unit]] = []
        current: list[_Unit] = []
        used = 0
        for u in units:
            if current and used + u.cost > capacity:
                windows.append(current)
                current, used = [], 0
            current.append(u)
            used += u.cost
        if current:
            windows.append(current)
        return windows

    def _windows(
        self, query: str, chunks: Sequence[tuple[str | None, str]], heads: HeadSet | None = None
    ) -> Iterator[tuple[list[_Unit], torch.Tensor, EncodedPrompt]]:
        """Yield ``(units, calibrated per-head vectors, encoded prompt)`` for each window of the input."""
        plan = self._head_plan(heads)
        units, capacity = self._units(query, chunks)
        windows = self._pack(units, capacity)
        progress = None
        if self.config.show_progress:  # counted in tokens, so one long window shows too, and splits add nothing
            from tqdm.auto import tqdm

            desc = f"scoring {len(windows)} window{'s' if len(windows) > 1 else ''}"
            progress = tqdm(total=sum(u.cost for u in units), desc=desc, unit="tok", unit_scale=True)
        limit = self.window_tokens
        queue = list(windows)
        too_big: int | None = None  # the smallest window (in tokens) that ran out of memory in this call
        try:
            while queue:
                window = queue.pop(0)
                size = sum(u.cost for u in window)
                if too_big is not None and size >= too_big and len(window) > 1:  # would fail again: split first
                    half = len(window) // 2
                    queue[:0] = [window[:half], window[half:]]
                    continue
                oom: str | None = None
                try:
                    vectors, enc = self._window_vectors(query, window, plan)
                except torch.cuda.OutOfMemoryError as exc:
                    oom = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if oom is not None:  # outside the except block, so the failed window's tensors are released
                    _free_accelerator_memory(self.loaded.device)
                    too_big = size if too_big is None else min(too_big, size)
                    halves = self._split_after_oom(window, oom)
                    logger.warning(
                        "out of memory on a %d-token window of %d chunk piece(s); retrying as %d smaller windows",
                        size, len(window), len(halves),
                    )
                    queue[:0] = halves
                    continue
                if enc.num_tokens > limit and len(window) > 1:  # boundary tokenization overshot: split
                    half = len(window) // 2
                    queue[:0] = [window[:half], window[half:]]
                    continue
                yield window, vectors, enc
                if progress is not None:
                    progress.update(size)
        finally:
            if progress is not None:
                progress.close()

    def _combine(
        self,
        query: str,
        chunks: Sequence[tuple[str | None, str]],
        heads: HeadSet | None,
        rows: Sequence[Sequence[int]] | None,
        outlier_stds: Sequence[float | None],
        layout: str | None = None,
    ) -> list[torch.Tensor]:
        """Chunk scores ``(len(rows), n_chunks)`` in input order, one matrix per outlier setting.

        The chunks are written into the prompt in the order(s) of ``layout`` (the config's when ``None``);
        with ``"both"`` each matrix is the mean of the two layouts' matrices.
        """
        passes = []
        for order in layout_orders(len(chunks), self._layout(layout)):
            laid_out = self._combine_in_prompt_order(query, [chunks[i] for i in order], heads, rows, outlier_stds)
            back = []
            for mat in laid_out:
                aligned = torch.empty_like(mat)
                aligned[:, order] = mat
                back.append(aligned)
            passes.append(back)
        if len(passes) == 1:
            return passes[0]
        return [torch.stack([p[k] for p in passes]).mean(dim=0) for k in range(len(outlier_stds))]

    def _layout(self, layout: str | None) -> str:
        return check_layout(self.config.layout if layout is None else layout)

    def _combine_in_prompt_order(
        self,
        query: str,
        chunks: Sequence[tuple[str | None, str]],
        heads: HeadSet | None,
        rows: Sequence[Sequence[int]] | None,
        outlier_stds: Sequence[float | None],
    ) -> list[torch.Tensor]:
        """Chunk scores ``(len(rows), n_chunks)``, one matrix per outlier setting, from one pass.

        Each row sums the listed heads before outlier filtering; ``rows=None`` scores every head on its
        own. Pieces of a split chunk are folded with ``max``.
        """
        outs = [torch.full((0, 0), 0.0)] * len(outlier_stds)
        first = True
        for window, vectors, enc in self._windows(query, chunks, heads):
            summed = vectors if rows is None else torch.stack([vectors[list(r)].sum(dim=0) for r in rows])
            for k, std in enumerate(outlier_stds):
                scores = chunk_scores(summed, enc.chunk_spans, std)
                if first:
                    outs[k] = torch.full((scores.shape[0], len(chunks)), -math.inf, dtype=torch.float64)
                for j, unit in enumerate(window):
                    outs[k][:, unit.owner] = torch.maximum(outs[k][:, unit.owner], scores[:, j])
            first = False
        return outs

    # ------------------------------------------------------------------ public API
    def score(self, query: str, chunks: Sequence[Chunk], *, layout: str | None = None) -> list[float]:
        """One relevance score per chunk, aligned with the input (higher is more relevant).

        Args:
            query: the question or search text.
            chunks: strings, ``(title, text)`` pairs, or mappings with ``"text"`` (and ``"title"``).
            layout: how the chunks are written into the prompt: ``"input"``, ``"reversed"`` (the first
                chunk next to the query: right for best-first retriever output) or ``"both"`` (two passes,
                scores averaged); ``None`` takes :attr:`ScorerConfig.layout`. Scores stay in input order.

        Returns:
            Plain Python floats; ``[]`` for no chunks.

        Raises:
            ValueError: the query is empty.
            TypeError: the query is not a string, or a chunk has an unsupported type (its index is named).

        Example:
            >>> QRScorer().score("capital of France?", ["Paris is the capital of France.", "Cats purr."])  # doctest: +SKIP
            [0.41..., 0.02...]
        """
        query = _check_query(query)
        layout = self._layout(layout)
        norm = self._normalize(chunks)
        if not norm:
            return []
        n_heads = len(self._head_plan()[0])
        total = self._combine(query, norm, None, [range(n_heads)], [self.config.outlier_std], layout)[0][0]
        return [float(x) for x in total.tolist()]

    def score_head_sets(
        self, query: str, chunks: Sequence[Chunk], head_sets: Sequence[HeadSpec], *, layout: str | None = None
    ) -> list[list[float]]:
        """Scores under several head sets from one forward pass over the union of their heads.

        Each set is aggregated exactly as :meth:`score` would with ``heads=<that set>``: cheap comparisons
        of head sets (detected vs all vs random) on the same inputs.

        Example:
            >>> all_s, two = QRScorer().score_head_sets("q?", ["a", "b"], ["all", "3-1,12-4"])  # doctest: +SKIP
        """
        query = _check_query(query)
        layout = self._layout(layout)
        norm = self._normalize(chunks)
        lm = self.loaded
        resolved = [HeadSet.parse(h).resolve(lm.num_layers, lm.num_heads) for h in head_sets]
        if not norm:
            return [[] for _ in resolved]
        union = HeadSet(heads=tuple(sorted(set().union(*map(set, resolved)))))
        order = self._head_plan(union)[0]
        position = {h: i for i, h in enumerate(order)}
        rows = [[position[h] for h in r] for r in resolved]
        mat = self._combine(query, norm, union, rows, [self.config.outlier_std], layout)[0]
        return [[float(x) for x in row] for row in mat.tolist()]

    def head_scores(
        self, query: str, chunks: Sequence[Chunk], heads: HeadSpec = "all", *, layout: str | None = None
    ) -> HeadScores:
        """Per-head chunk scores (every head by default): the raw material of head detection.

        Example:
            >>> hs = QRScorer().head_scores("capital of France?", ["Paris is the capital.", "Cats purr."])  # doctest: +SKIP
            >>> hs.scores.shape  # doctest: +SKIP
            torch.Size([270, 2])
        """
        query = _check_query(query)
        layout = self._layout(layout)
        norm = self._normalize(chunks)
        hs = HeadSet.parse(heads)
        if not norm:
            order = self._head_plan(hs)[0]
            empty = torch.zeros(len(order), 0, dtype=torch.float64)
            return HeadScores(order, empty, empty)
        order = self._head_plan(hs)[0]
        filtered, mass = self._combine(query, norm, hs, None, [self.config.outlier_std, None], layout)
        return HeadScores(order, filtered, mass)

    def rank(
        self, query: str, chunks: Sequence[Chunk], top_n: int | None = None, *, layout: str | None = None
    ) -> RankedResults:
        """Chunks best first (ties keep input order), optionally only the best ``top_n``.

        Example:
            >>> r = QRScorer().rank("Which fruit has potassium?", ["Paris.", "Bananas have potassium."])  # doctest: +SKIP
            >>> r[0].index, r[0].rank  # doctest: +SKIP
            (1, 1)
        """
        _check_positive("top_n", top_n)
        items_in = self._chunk_list(chunks)  # once: an iterator must not be consumed twice
        norm = self._normalize(items_in)
        scores = self.score(query, items_in, layout=layout)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        if top_n is not None:
            order = order[:top_n]
        items = tuple(
            RankedChunk(index=i, score=scores[i], rank=r + 1, text=norm[i][1], title=norm[i][0])
            for r, i in enumerate(order)
        )
        return RankedResults(query=query, items=items)

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
        _check_positive("max_tokens", max_tokens)
        _check_positive("top_n", top_n)
        query = _check_query(query)
        if isinstance(text_or_chunks, str):
            chunks: list[Chunk] = list(split_text(text_or_chunks, self.config.chunk_size, self.count_tokens))
        else:
            chunks = self._chunk_list(text_or_chunks)
        norm = self._normalize(chunks)
        texts = [(f"{t}\n{x}" if t else x) for t, x in norm]
        scores = self.score(query, chunks, layout=layout) if norm else []
        counts = [self.count_tokens(t) for t in texts]
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
            num_input_chunks=len(norm),
            input_tokens=sum(counts),
            all_scores=tuple(scores),
            input_chunks=tuple(texts),
        )

    @staticmethod
    def _chunk_list(chunks: Any) -> list[Any]:
        """``chunks`` as a list (any ordered iterable), or a TypeError saying what was passed."""
        if isinstance(chunks, str):
            raise TypeError("chunks must be a list of chunks, not one string; use trim() to split a long text")
        if isinstance(chunks, (Mapping, Set)):  # iterating would give keys, or an order scores cannot follow
            raise TypeError(f"chunks must be an ordered list of chunks, got {type(chunks).__name__}")
        try:
            return list(chunks)
        except TypeError as exc:
            raise TypeError(f"chunks must be a list, got {type(chunks).__name__}") from exc

    @staticmethod
    def _normalize(chunks: Sequence[Chunk]) -> list[tuple[str | None, str]]:
        return [normalize_chunk(c, i) for i, c in enumerate(QRScorer._chunk_list(chunks))]

    def __repr__(self) -> str:
        cfg = self.config
        return f"QRScorer(model={cfg.model or 'embedded'!r}, heads={cfg.heads or 'default'!r}, device={cfg.device!r})"
