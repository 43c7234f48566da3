"""Capturing query-to-context attention at transformers' attention-function seam.

We register one attention function, ``"qr_capture"``, in transformers' ``AttentionInterface`` (and the SDPA
mask builder under the same name in ``AttentionMaskInterface``).  It always computes the layer's output
with transformers' own SDPA function, so the model runs exactly as with ``attn_implementation="sdpa"``.
When a capture is active (a :class:`CaptureState` in the context variable) and the layer holds selected
heads, it additionally computes, for those heads only, the softmax attention of the query-span rows over
all keys and keeps the sum over those rows for the context tokens.  That is ``batch x heads x context``
floats per layer: nothing of size ``tokens x tokens`` is stored.  ``CaptureState.rows`` names the rows to
capture, so one pass can capture just the end of a long prompt: the scorer's prefix pass captures the
instruction rows that the query and the null query share.

Early exit: a forward hook on each decoder layer raises :class:`EarlyExit` after the deepest layer that
holds a selected head, so deeper layers (and the LM head) are never computed.

The state lives in a :class:`contextvars.ContextVar`, so concurrent threads and asyncio tasks that share
one model never see each other's captures.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch

ATTN_IMPLEMENTATION = "qr_capture"


class EarlyExit(Exception):  # noqa: N818 - control flow, not an error
    """Raised by a layer hook to stop the forward pass after the deepest needed layer."""


@dataclass
class CaptureState:
    """What the attention function should capture during one forward pass.

    Attributes:
        heads_by_layer: layer index -> tensor of head indices to capture in that layer.
        context_len: number of leading key positions to keep (the prefix holding the chunks).
        stop_after_layer: raise :class:`EarlyExit` after this decoder layer (``None``: run all).
        capture: whether this pass captures (``False`` for the prefix pass, which only fills the cache).
        total_len: tokens in the sequence once the current pass is done (cache + new tokens); a
            sliding-window layer sees only its last keys, and this places them at their positions.
        rows: per batch element, the ``[start, end)`` range of this pass's new tokens whose rows are captured;
            ``None``: every row.
        out: layer index -> ``(batch, n_selected_heads, context_len)`` float32 attention summed over the
            captured rows.
    """

    heads_by_layer: dict[int, torch.Tensor]
    context_len: int
    stop_after_layer: int | None
    capture: bool = True
    total_len: int = 0
    rows: tuple[tuple[int, int], ...] | None = None
    out: dict[int, torch.Tensor] = field(default_factory=dict)


_STATE: ContextVar[CaptureState | None] = ContextVar("qr_integrations_capture", default=None)


@contextmanager
def capturing(state: CaptureState) -> Iterator[CaptureState]:
    """Activate ``state`` for forward passes run inside the ``with`` block (this thread/task only)."""
    token = _STATE.set(state)
    try:
        yield state
    finally:
        _STATE.reset(token)


def query_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    heads: torch.Tensor,
    scaling: float | None,
    context_len: int,
    sliding_window: int | None = None,
    key_offset: int = 0,
    rows: tuple[tuple[int, int], ...] | None = None,
) -> torch.Tensor:
    """Softmax attention of query rows over the first ``context_len`` keys, summed over rows, per selected head.

    Args:
        query: ``(batch, num_heads, q_len, head_dim)`` post-RoPE query states of the new tokens.
        key: ``(batch, num_kv_heads, kv_len, head_dim)`` post-RoPE key states, cache included.
        heads: indices of the query heads to compute.
        scaling: the softmax scale (``1/sqrt(head_dim)`` when ``None``).
        context_len: number of leading keys to return.
        sliding_window: the layer's window, if it uses one.
        key_offset: absolute position of ``key``'s first entry (non-zero when a sliding-window cache
            hands the layer only its most recent keys).
        rows: per batch element, the ``[start, end)`` range of the ``q_len`` new rows to sum over;
            ``None`` sums all rows of every element. Only those rows are computed.

    Returns:
        ``(batch, len(heads), context_len)`` float32 tensor over absolute positions ``0 .. context_len - 1``
        (zero where the layer saw no key). The new rows are the *last* ``q_len`` positions, so row
        ``i`` sees keys ``0 .. kv_len - q_len + i`` of ``key`` (causal).

    Example:
        >>> q, k = torch.randn(2, 4, 3, 8), torch.randn(2, 2, 10, 8)
        >>> out = query_attention(q, k, torch.tensor([0, 3]), None, context_len=7, rows=((0, 3), (1, 2)))
        >>> out.shape
        torch.Size([2, 2, 7])
    """
    batch, num_heads, q_len, _ = query.shape
    groups = num_heads // key.shape[1]
    kv_len = key.shape[2]
    kv_heads = torch.div(heads, groups, rounding_mode="floor")
    scale = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
    spans = rows if rows is not None else ((0, q_len),) * batch
    cols = torch.arange(kv_len, device=query.device)[None, :]
    sums = []
    for b, (start, end) in enumerate(spans):
        q = query[b, :, start:end].index_select(0, heads).float()
        k = key[b].index_select(0, kv_heads).float()
        logits = torch.matmul(q, k.transpose(-1, -2)) * scale
        row_pos = torch.arange(start, end, device=query.device)[:, None] + (kv_len - q_len)
        hidden = cols > row_pos
        if sliding_window:
            hidden = hidden | (cols <= row_pos - sliding_window)
        sums.append(torch.softmax(logits.masked_fill(hidden, float("-inf")), dim=-1).sum(dim=1))
    total = torch.stack(sums)
    if key_offset == 0:
        return total[..., :context_len]
    out = total.new_zeros(total.shape[0], total.shape[1], context_len)
    take = max(0, min(kv_len, context_len - key_offset))
    out[..., key_offset : key_offset + take] = total[..., :take]
    return out


def qr_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The registered attention function: SDPA output, plus the capture when one is active."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    output = sdpa_attention_forward(
        module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
    )
    state = _STATE.get()
    if state is not None and state.capture:
        layer = getattr(module, "layer_idx", None)
        heads = state.heads_by_layer.get(layer) if layer is not None else None
        if heads is not None:
            window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
            offset = max(0, state.total_len - key.shape[-2])
            state.out[layer] = query_attention(  # type: ignore[index]
                query, key, heads.to(query.device), scaling, state.context_len, window, offset, state.rows
            )
    return output


_REGISTERED = False


def register_attention() -> str:
    """Register ``"qr_capture"`` with transformers (idempotent) and return its name."""
    global _REGISTERED
    if not _REGISTERED:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(ATTN_IMPLEMENTATION, qr_attention_forward)
        AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
        _REGISTERED = True
    return ATTN_IMPLEMENTATION


def install_early_exit(layers: torch.nn.ModuleList) -> None:
    """Add the early-exit hook to every decoder layer once (idempotent)."""
    for idx, layer in enumerate(layers):
        if getattr(layer, "_qr_early_exit_installed", False):
            continue

        def hook(_module: torch.nn.Module, _args: Any, _output: Any, idx: int = idx) -> None:
            state = _STATE.get()
            if state is not None and state.stop_after_layer == idx:
                raise EarlyExit

        layer.register_forward_hook(hook)
        setattr(layer, "_qr_early_exit_installed", True)  # noqa: B010
