"""The forward engine: run a window's prefix once, then any number of query spans over its KV cache.

QRHead's prompt puts the chunks first and the query last, so the prefix (template head and chunk blocks)
is the same for every question about the same chunks. :meth:`ForwardEngine.prepare` runs it once, to the
deepest selected layer, and keeps:

* the KV cache of the layers up to that layer (:attr:`PreparedPrefix.nbytes`);
* the captured rows of the query span's leading instruction, which the real and the null query share
  (causal attention gives those rows the same values whatever follows them);
* the null query's mean attention (the calibration), when asked for.

:meth:`ForwardEngine.attend` then runs one query span's remaining tokens over the cache, captures the
attention of its rows over the prefix, and crops the cache back, so the prefix can serve the next query.
Every pass has a fresh :class:`~qr_integrations.core.capture.CaptureState`, and every pass holds the
model's lock, so prefixes can be shared between threads.

Tests and benchmarks that want to watch or fail forward passes subclass the engine and set
``QRScorer.engine``; nothing needs to patch a private method.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from .capture import CaptureState, EarlyExit, capturing
from .heads import Head
from .models import LoadedModel


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


@dataclass(frozen=True)
class HeadPlan:
    """Which heads a pass captures, in the row order of every result.

    Attributes:
        heads: ``(layer, head)`` of each row, layer by layer.
        by_layer: layer -> tensor of its selected head indices.
        deepest: the last layer the pass runs.
    """

    heads: tuple[Head, ...]
    by_layer: dict[int, torch.Tensor]
    deepest: int

    @classmethod
    def build(cls, heads: Sequence[Head], device: torch.device | str = "cpu") -> HeadPlan:
        """The plan for resolved ``(layer, head)`` pairs (rows grouped by layer, layers ascending).

        Example:
            >>> HeadPlan.build([(3, 1), (1, 0), (3, 0)]).heads
            ((1, 0), (3, 1), (3, 0))
        """
        by_layer: dict[int, list[int]] = {}
        for layer, head in heads:
            by_layer.setdefault(layer, []).append(head)
        order: list[Head] = []
        tensors: dict[int, torch.Tensor] = {}
        for layer in sorted(by_layer):
            tensors[layer] = torch.tensor(by_layer[layer], dtype=torch.long, device=device)
            order.extend((layer, h) for h in by_layer[layer])
        return cls(tuple(order), tensors, max(by_layer))


def shared_length(*spans: Sequence[int]) -> int:
    """Leading tokens every span has in common, keeping at least one token of each to run as its tail.

    Example:
        >>> shared_length([1, 2, 3, 9], [1, 2, 4])
        2
    """
    limit = min(len(ids) for ids in spans) - 1
    n = 0
    while n < limit and all(ids[n] == spans[0][n] for ids in spans):
        n += 1
    return n


class ContextClosedError(RuntimeError):
    """A prepared context (or prefix) was used after ``close()``; prepare a new one."""


class PreparedPrefix:
    """One window's prefix, run once: its KV cache, the shared instruction rows and the null calibration.

    Attributes:
        prefix_ids: the prefix tokens (template head, intro, chunk blocks).
        shared_ids: the query span's leading tokens that are already in the cache.
        plan: the heads captured.
        common: ``(heads, prefix_len)`` attention of the shared rows, summed (``0.0`` when none).
        null: ``(heads, prefix_len)`` mean attention of the null query's span, or ``None``.
    """

    def __init__(
        self, prefix_ids: Sequence[int], shared_ids: Sequence[int], plan: HeadPlan, cache: Any, common: Any
    ) -> None:
        self.prefix_ids = tuple(prefix_ids)
        self.shared_ids = tuple(shared_ids)
        self.plan = plan
        self.common = common
        self.null: torch.Tensor | None = None
        self._cache = cache
        self.stored_dtype: torch.dtype | None = None  # None: kept in the model's dtype

    @property
    def cache(self) -> Any:
        """The KV cache; :class:`ContextClosedError` once released."""
        if self._cache is None:
            raise ContextClosedError("this prepared prefix was released (close() was called); prepare it again")
        return self._cache

    @property
    def closed(self) -> bool:
        """Whether the KV cache was released."""
        return self._cache is None

    @property
    def nbytes(self) -> int:
        """Bytes held: the KV cache plus the captured vectors."""
        total = 0
        if self._cache is not None:
            for layer in getattr(self._cache, "layers", []):
                for name in ("keys", "values"):
                    t = getattr(layer, name, None)
                    if isinstance(t, torch.Tensor):
                        total += t.numel() * t.element_size()
        for t in (self.common, self.null):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
        return total

    def release(self) -> None:
        """Drop the KV cache (the vectors stay); later :meth:`ForwardEngine.attend` calls raise."""
        self._cache = None

    def cast(self, dtype: torch.dtype) -> None:
        """Convert the KV cache's floating-point tensors to ``dtype`` in place (see :meth:`store_as`)."""
        for layer in getattr(self.cache, "layers", []):
            for name in ("keys", "values"):
                t = getattr(layer, name, None)
                if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != dtype:
                    setattr(layer, name, t.to(dtype))

    def store_as(self, dtype: torch.dtype) -> None:
        """Keep the KV cache in ``dtype`` between passes (e.g. float16: half of float32's memory).

        Each pass over the prefix works on a copy cast back to the model's dtype, so only one window at a
        time is held at full precision; the rounding to ``dtype`` makes scores differ slightly from a
        plain call's.
        """
        self.cast(dtype)
        self.stored_dtype = dtype


class ForwardEngine:
    """Forward passes of one loaded model with capture: one prefix pass, any number of tails.

    Args:
        loaded: the model (see :func:`~qr_integrations.core.models.load_model`).
        num_threads: torch's intra-op threads during each pass (``None``: unchanged).

    Example:
        >>> from qr_integrations import QRScorer
        >>> scorer = QRScorer(heads="1-0,2-3")
        >>> engine, b = scorer.engine, scorer.loaded.builder
        >>> enc = b.encode("Which fruit?", [(None, "Bananas have potassium.")])
        >>> plan = HeadPlan.build([(1, 0), (2, 3)])
        >>> shared = enc.query_ids[: shared_length(enc.query_ids, enc.null_ids)]  # the instruction both share
        >>> prefix = engine.prepare(enc.prefix_ids, plan, shared_ids=shared, null_ids=enc.null_ids)
        >>> engine.calibrated(prefix, enc.query_ids).shape == (2, len(enc.prefix_ids))
        True
    """

    def __init__(self, loaded: LoadedModel, num_threads: int | None = None) -> None:
        self.loaded = loaded
        self.num_threads = num_threads

    def _run(self, ids: Sequence[int], cache: Any, state: CaptureState) -> None:
        lm = self.loaded
        tensor = torch.tensor([list(ids)], dtype=torch.long, device=lm.device)
        with capturing(state):
            try:
                lm.model(input_ids=tensor, use_cache=True, **{lm.cache_kwarg: cache})
            except EarlyExit:
                pass

    @staticmethod
    def _rows(state: CaptureState, plan: HeadPlan) -> torch.Tensor:
        return torch.cat([state.out[layer] for layer in sorted(plan.by_layer)], dim=1)[0]

    def prepare(
        self,
        prefix_ids: Sequence[int],
        plan: HeadPlan,
        *,
        shared_ids: Sequence[int] = (),
        null_ids: Sequence[int] | None = None,
    ) -> PreparedPrefix:
        """Run ``prefix_ids + shared_ids`` once (to ``plan.deepest``), capturing the shared rows; then the
        null query's span when ``null_ids`` is given (it must start with ``shared_ids``)."""
        from transformers import DynamicCache

        lm = self.loaded
        prefix_len = len(prefix_ids)
        head_ids = list(prefix_ids) + list(shared_ids)
        shared = len(shared_ids)
        state = CaptureState(heads_by_layer=plan.by_layer, context_len=prefix_len, stop_after_layer=plan.deepest,
                             capture=shared > 0, total_len=len(head_ids), rows=((prefix_len, len(head_ids)),))
        with lm.lock, torch_threads(self.num_threads), torch.inference_mode():
            cache = DynamicCache(config=lm.model.config)
            cache.activate_past_recording()  # sliding-window layers keep their past so crops work
            self._run(head_ids, cache, state)
            common = self._rows(state, plan) if shared else 0.0
        prefix = PreparedPrefix(prefix_ids, shared_ids, plan, cache, common)
        if null_ids is not None:
            prefix.null = self.attend(prefix, null_ids)
        return prefix

    def attend(self, prefix: PreparedPrefix, span_ids: Sequence[int]) -> torch.Tensor:
        """Mean attention of ``span_ids``'s rows over the prefix, per head: ``(heads, prefix_len)``.

        The span runs over the prefix's cache, which is cropped back afterwards. A span that does not start
        with the prefix's shared tokens is run whole (slower, same values).
        """
        lm = self.loaded
        with lm.lock, torch_threads(self.num_threads), torch.inference_mode():
            stored = prefix.stored_dtype
            if stored is None:
                return self._attend(prefix, span_ids)
            prefix.cast(lm.dtype)  # a working copy at full precision (the fp16 -> fp32 -> fp16 trip is exact)
            try:
                return self._attend(prefix, span_ids)
            finally:
                prefix.cast(stored)

    def _attend(self, prefix: PreparedPrefix, span_ids: Sequence[int]) -> torch.Tensor:
        """:meth:`attend` under the model's lock, with the cache at the model's dtype."""
        plan = prefix.plan
        prefix_len = len(prefix.prefix_ids)
        shared = len(prefix.shared_ids)
        cache = prefix.cache
        if tuple(span_ids[:shared]) == prefix.shared_ids and len(span_ids) > shared:
            tail = list(span_ids[shared:])
            state = CaptureState(heads_by_layer=plan.by_layer, context_len=prefix_len,
                                 stop_after_layer=plan.deepest, total_len=prefix_len + len(span_ids))
            self._run(tail, cache, state)
            cache.crop(-len(tail))
            return (prefix.common + self._rows(state, plan)) / len(span_ids)
        # the span differs inside the shared part: run it whole over the bare prefix, then restore
        if shared:
            cache.crop(-shared)
        state = CaptureState(heads_by_layer=plan.by_layer, context_len=prefix_len,
                             stop_after_layer=plan.deepest, total_len=prefix_len + len(span_ids))
        self._run(span_ids, cache, state)
        cache.crop(-len(span_ids))
        if shared:
            restore = CaptureState(heads_by_layer=plan.by_layer, context_len=prefix_len,
                                   stop_after_layer=plan.deepest, capture=False, total_len=prefix_len + shared)
            self._run(prefix.shared_ids, cache, restore)
        return self._rows(state, plan) / len(span_ids)

    def calibrated(self, prefix: PreparedPrefix, span_ids: Sequence[int]) -> torch.Tensor:
        """The query span's attention minus the null query's (plain attention when not calibrated)."""
        att = self.attend(prefix, span_ids)
        return att - prefix.null if prefix.null is not None else att

    def bytes_per_token(self, plan: HeadPlan, dtype: torch.dtype | None = None) -> int:
        """KV-cache bytes one prefix token costs for this plan (keys and values of layers 0..deepest),
        stored in ``dtype`` (the model's when ``None``)."""
        cfg = self.loaded.model.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        itemsize = (dtype or self.loaded.dtype).itemsize
        return 2 * (plan.deepest + 1) * self.loaded.num_kv_heads * head_dim * itemsize


class PrefixCache:
    """A thread-safe LRU of prepared prefixes, bounded in bytes.

    Example:
        >>> cache = PrefixCache(max_bytes=0)
        >>> cache.get("k") is None and cache.hits == 0 and cache.misses == 1
        True
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[PreparedPrefix, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __getstate__(self) -> dict[str, int]:  # a copy (pickle, deepcopy) starts empty, with its own lock
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["max_bytes"])  # type: ignore[misc]

    def get(self, key: Hashable) -> PreparedPrefix | None:
        """The prefix stored under ``key`` (now the most recent), or ``None``."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, prefix: PreparedPrefix) -> None:
        """Store ``prefix``, evicting the least recently used until the total fits (one larger than the
        whole budget is not stored)."""
        size = prefix.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._items[key] = (prefix, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes and self._items:
                _, (_, n) = self._items.popitem(last=False)
                self.nbytes -= n

    def clear(self) -> None:
        """Drop every stored prefix."""
        with self._lock:
            self._items.clear()
            self.nbytes = 0
