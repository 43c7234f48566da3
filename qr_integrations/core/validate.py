"""Argument checks shared by the scorer, prepared contexts and adapters: one place for the messages users see."""

from __future__ import annotations

from typing import Any

from .config import ScorerConfig
from .heads import HeadSet, default_head_set_for
from .models import DeviceError, locate_model, model_shape, resolve_device, resolve_dtype
from .prior import check_dense_prior


def check_query(query: Any) -> str:
    """``query`` if it is a non-empty string, else a ``TypeError``/``ValueError`` that says what to pass.

    Example:
        >>> check_query("Which fruit has potassium?")
        'Which fruit has potassium?'
        >>> check_query("  ")
        Traceback (most recent call last):
        ...
        ValueError: query is empty; pass the question or search text to score chunks against
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise ValueError("query is empty; pass the question or search text to score chunks against")
    return query


def check_positive(name: str, value: int | None) -> None:
    """Nothing when ``value`` is ``None`` or a positive integer, else a ``ValueError`` naming ``name``.

    Example:
        >>> check_positive("top_n", 3)
        >>> check_positive("top_n", 0)
        Traceback (most recent call last):
        ...
        ValueError: top_n must be a positive integer or None, got 0
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


def check_config(config: ScorerConfig, heads: HeadSet | None = None) -> tuple[int, int] | None:
    """Check what can be checked without loading weights, with the errors loading would raise.

    The model argument (a local path that does not exist, a folder without ``config.json``, a missing
    embedded package: :class:`ModelLoadError`), the device (``"gpu"``, ``"cuda"`` on a CPU-only torch:
    :class:`~qr_integrations.core.models.DeviceError`), the dtype (``ValueError``), and the head set
    against the model's shape when that is known without loading (the embedded model, a local folder, a
    hub id in the local cache: :class:`HeadSetError`), and what ``prior="dense"`` needs (sentence-transformers
    and, for the embedded encoder, its package: ``ModuleNotFoundError``). Returns that shape, or ``None``.

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
    if config.prior == "dense":
        check_dense_prior(config.prior_model)
    shape = model_shape(config.model)
    if shape is not None:
        head_set = heads if heads is not None else config.head_set()
        if head_set is None:
            head_set = default_head_set_for(locate_model(config.model)[1])
        head_set.resolve(*shape)
    return shape
