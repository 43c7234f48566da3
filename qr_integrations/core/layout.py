"""How candidate chunks are laid out in the scoring prompt, independent of the order they come in.

Attention from the query span favours chunks near the query (the end of the prompt) for small models:
with SmolLM2-135M on SciFact, the same 20 BM25 candidates ranked at nDCG@10 0.747 when the best BM25
candidates were placed last and 0.496 when they were placed first (docs/results-reranking.md). QRHead's
reference code reverses BEIR candidates for that reason. A layout is the order in which the input's
chunks are written into the prompt; scores always come back aligned with the input.

* ``"input"``: as given (chunk 0 first, farthest from the query);
* ``"reversed"``: last chunk first, so the input's first chunk sits next to the query. Retrievers hand
  candidates best first, so this puts their best guesses where the model looks hardest;
* ``"both"``: score in both layouts (two forward passes) and average the two scores per chunk, which
  cancels a bias that is linear in position.
"""

from __future__ import annotations

from typing import Literal

Layout = Literal["input", "reversed", "both"]
LAYOUTS: tuple[str, ...] = ("input", "reversed", "both")


def check_layout(layout: object) -> str:
    """``layout`` if it is a known layout name, else a ``ValueError`` that lists them.

    Example:
        >>> check_layout("reversed")
        'reversed'
    """
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    return layout


def rotations(order: list[int], orders: int) -> list[list[int]]:
    """``order`` and ``orders - 1`` cyclic rotations of it, evenly spaced: rotation ``r`` starts at position
    ``r * n // orders``, so every chunk is written at ``orders`` places spread over the prompt. Fewer when
    the list is shorter than ``orders`` (a rotation is never repeated).

    Example:
        >>> rotations([0, 1, 2, 3], 2)
        [[0, 1, 2, 3], [2, 3, 0, 1]]
        >>> rotations([0, 1], 4)
        [[0, 1], [1, 0]]
    """
    n = len(order)
    shifts = sorted({(r * n) // orders for r in range(orders)}) if n else [0]
    return [order[s:] + order[:s] for s in shifts]


def layout_orders(n: int, layout: str, orders: int = 1) -> list[list[int]]:
    """The prompt orders a layout needs: each lists input indices in prompt position order.

    ``orders`` > 1 adds evenly spaced rotations of each of the layout's orders (see :func:`rotations`):
    each chunk is read at several places and its scores are averaged, which cancels the position bias
    that a single order leaves in.

    Example:
        >>> layout_orders(3, "input"), layout_orders(3, "reversed")
        ([[0, 1, 2]], [[2, 1, 0]])
        >>> layout_orders(2, "both")
        [[0, 1], [1, 0]]
        >>> layout_orders(4, "input", orders=2)
        [[0, 1, 2, 3], [2, 3, 0, 1]]
    """
    forward = list(range(n))
    backward = forward[::-1]
    base = {"input": [forward], "reversed": [backward], "both": [forward, backward]}[check_layout(layout)]
    if orders == 1:
        return base
    return [rotated for order in base for rotated in rotations(order, orders)]
