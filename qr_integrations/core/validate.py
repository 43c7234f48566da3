"""Argument checks shared by the scorer and prepared contexts: one place for the messages users see."""

from __future__ import annotations

from typing import Any


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
