"""Window planning: which chunks go into which forward pass, as pure functions of the tokenizer.

An input longer than one forward pass (``window_tokens``) is scored in windows of whole chunks. Planning
needs only the tokenizer (through a :class:`~qr_integrations.core.prompt.PromptBuilder`), never the model:

1. :func:`query_room`: the tokens kept for the query span. It is at least the span of a query of
   :data:`QUERY_RESERVE` tokens, so the plan does not move with the length of ordinary queries: a second
   question over the same chunks gets the same windows (what prepared contexts and the prefix cache
   reuse), and a question longer than the reservation gets a plan of its own.
2. :func:`plan_units`: each chunk becomes a :class:`Unit` with its token cost; a chunk longer than a window
   is cut into pieces on token boundaries (:func:`cut_unit`), each a unit owned by the same chunk.
3. :func:`pack`: units are packed in order into windows up to the capacity.
4. :func:`split_window`: the one re-queue step. A window that overshoots the limit after tokenization, or
   runs out of accelerator memory, is halved; a single unit that runs out of memory is cut into smaller
   pieces, down to a floor where :class:`ScorerOutOfMemoryError` says what to change.
5. :func:`schedule`: runs a function over the windows, re-queueing with :func:`split_window`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from .prompt import SEPARATOR, PromptBuilder, chunk_block

WINDOW_MARGIN = 8  # tokens kept free in each window for tokenization effects at block boundaries
MIN_PIECE_TOKENS = 16  # out of memory on a piece shorter than twice this: give up with a clear error
MIN_CAPACITY = 32  # the fewest chunk tokens a window must hold
QUERY_RESERVE = 64  # query tokens every window keeps room for (at most 1/16 of the window)

logger = logging.getLogger(__name__)

R = TypeVar("R")


class ScorerOutOfMemoryError(torch.cuda.OutOfMemoryError):
    """A single window still ran out of accelerator memory after splitting it down to the smallest piece.

    It subclasses ``torch.OutOfMemoryError``, so code that already catches that keeps working.
    """


@dataclass(frozen=True)
class Unit:
    """One chunk, or one piece of a chunk longer than a window, as it is placed in a window.

    Attributes:
        owner: index of the chunk it belongs to (in the order the chunks were planned).
        title: the chunk's title, or ``None``.
        text: the chunk's text (or the piece's).
        cost: tokens its block takes in the prompt (an upper estimate).
    """

    owner: int
    title: str | None
    text: str
    cost: int


Window = list[Unit]


def window_cost(window: Sequence[Unit]) -> int:
    """Tokens a window's chunk blocks take (the sum of their costs).

    Example:
        >>> window_cost([Unit(0, None, "a", 5), Unit(1, None, "b", 7)])
        12
    """
    return sum(u.cost for u in window)


def reserve_tokens(window_tokens: int) -> int:
    """Query tokens a window of ``window_tokens`` keeps room for: :data:`QUERY_RESERVE`, at most 1/16 of it.

    Example:
        >>> reserve_tokens(8192), reserve_tokens(256)
        (64, 16)
    """
    return min(QUERY_RESERVE, window_tokens // 16)


def query_room(builder: PromptBuilder, query: str | None, null_query: str, reserve: int) -> int:
    """Tokens kept for the query span: the longest of the query's span, the null query's, and the span of
    a ``reserve``-token query. ``query=None`` plans for any query that fits the reservation.
    """
    spans = [len(builder.query_span_ids("")) + reserve, len(builder.query_span_ids(null_query))]
    if query is not None:
        spans.append(len(builder.query_span_ids(query)))
    return max(spans)


def frame_tokens(builder: PromptBuilder) -> int:
    """Tokens of the prefix around the chunk blocks (chat template head, intro line, separator)."""
    return len(builder.encode("x", []).prefix_ids)


def capacity(builder: PromptBuilder, window_tokens: int, room: int) -> int:
    """Chunk tokens one window holds, or a ``ValueError`` when the query leaves no room.

    Example:
        >>> from qr_integrations import QRScorer  # doctest: +SKIP
        >>> capacity(QRScorer().loaded.builder, 8192, 100)  # doctest: +SKIP
        8054
    """
    overhead = frame_tokens(builder) + room
    cap = window_tokens - overhead - WINDOW_MARGIN
    if cap < MIN_CAPACITY:
        raise ValueError(
            f"the query needs {overhead} prompt tokens, leaving no room for chunks in a {window_tokens}-token "
            "window; shorten the query or raise max_context_tokens"
        )
    return cap


def cut_unit(builder: PromptBuilder, unit: Unit, title_cost: int, step: int) -> list[Unit]:
    """``unit`` cut into pieces of at most ``step`` text tokens (on token boundaries)."""
    offsets = builder.plain_encode(unit.text)["offset_mapping"]
    if not offsets:
        return [unit]
    pieces = []
    for start in range(0, len(offsets), step):
        piece_offsets = offsets[start : start + step]
        piece = unit.text[piece_offsets[0][0] : piece_offsets[-1][1]]
        pieces.append(Unit(unit.owner, unit.title, piece, title_cost + len(piece_offsets)))
    return pieces


def plan_units(builder: PromptBuilder, chunks: Sequence[tuple[str | None, str]], cap: int) -> list[Unit]:
    """One unit per chunk, or several pieces for a chunk longer than ``cap`` tokens.

    A title too long to repeat on every piece (over a quarter of the capacity) is folded into the text.
    """
    units: list[Unit] = []
    for i, (title, text) in enumerate(chunks):
        cost = builder.plain_token_count(SEPARATOR + chunk_block(len(chunks), title, text)) + 1
        if cost <= cap:
            units.append(Unit(i, title, text, cost))
            continue
        title_cost = builder.plain_token_count(SEPARATOR + chunk_block(len(chunks), title, "")) + 2
        if title and title_cost > cap // 4:
            title, text = None, f"{title}\n{text}"
            title_cost = builder.plain_token_count(SEPARATOR + chunk_block(len(chunks), None, "")) + 2
        units.extend(cut_unit(builder, Unit(i, title, text, cost), title_cost, max(16, (cap - title_cost) // 2)))
    return units


def pack(units: Sequence[Unit], cap: int) -> list[Window]:
    """Units packed in order into windows of at most ``cap`` tokens (a unit never straddles two).

    Example:
        >>> [[u.owner for u in w] for w in pack([Unit(i, None, "", 40) for i in range(5)], 100)]
        [[0, 1], [2, 3], [4]]
    """
    windows: list[Window] = []
    current: Window = []
    used = 0
    for u in units:
        if current and used + u.cost > cap:
            windows.append(current)
            current, used = [], 0
        current.append(u)
        used += u.cost
    if current:
        windows.append(current)
    return windows


def split_window(builder: PromptBuilder, window: Window, oom: str | None = None, window_tokens: int = 0) -> list[Window]:
    """The one re-queue step: two halves of a window of several units; for a single unit after running out
    of memory (``oom`` holds the error's first line), its pieces cut at half the length.

    Raises:
        ScorerOutOfMemoryError: a single unit out of memory that is too short to cut further.

    Example:
        >>> [[u.owner for u in w] for w in split_window(None, [Unit(i, None, "", 1) for i in range(3)])]
        [[0], [1, 2]]
    """
    if len(window) > 1:
        half = len(window) // 2
        return [window[:half], window[half:]]
    if oom is None:
        return [window]
    unit = window[0]
    text_tokens = builder.plain_token_count(unit.text)
    if text_tokens >= 2 * MIN_PIECE_TOKENS:
        step = (text_tokens + 1) // 2
        pieces = cut_unit(builder, unit, max(0, unit.cost - text_tokens), step)
        if len(pieces) > 1:
            return [[p] for p in pieces]
    raise ScorerOutOfMemoryError(
        f"out of memory scoring one piece of chunk {unit.owner} ({unit.cost} tokens) even after splitting its "
        f"window down to that piece: lower max_context_tokens (now {window_tokens}), use a smaller dtype "
        f"(dtype='bfloat16' or 'float16'), fewer heads, or device='cpu'. ({oom})"
    )


def _free_accelerator_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def schedule(
    builder: PromptBuilder,
    windows: Sequence[Window],
    run: Callable[[Window], R | None],
    window_tokens: int,
    progress: Any = None,
) -> Iterator[tuple[Window, R]]:
    """Yield ``(window, run(window))`` for every window in order, re-queueing with :func:`split_window`.

    ``run`` returns ``None`` for a window that overshoots the limit once tokenized (it is halved), and may
    raise ``torch.cuda.OutOfMemoryError`` (the window is halved, or its single piece cut smaller; a window at
    least as large as one that already ran out of memory is halved before it is tried). ``progress`` (a
    tqdm bar, or ``None``) advances by each finished window's tokens.
    """
    queue = list(windows)
    too_big: int | None = None  # the smallest window (in tokens) that ran out of memory so far
    while queue:
        window = queue.pop(0)
        size = window_cost(window)
        oom: str | None = None
        result: R | None = None
        if too_big is None or size < too_big or len(window) == 1:
            try:
                result = run(window)
            except torch.cuda.OutOfMemoryError as exc:
                oom = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if oom is not None:  # outside the except block, so the failed window's tensors are released
            _free_accelerator_memory()
            too_big = size if too_big is None else min(too_big, size)
            parts = split_window(builder, window, oom, window_tokens)
            logger.warning(
                "out of memory on a %d-token window of %d chunk piece(s); retrying as %d smaller windows",
                size, len(window), len(parts),
            )
        elif result is None and len(window) > 1:  # would fail again, or overshot the limit: halve first
            parts = split_window(builder, window)
        elif result is None:  # a single unit overshot: nothing smaller to try, run it as it is
            raise RuntimeError(f"a window of one chunk piece ({size} tokens) overshot the window limit")
        else:
            yield window, result
            if progress is not None:
                progress.update(size)
            continue
        queue[:0] = parts


# ---------------------------------------------------------------------------------------------- across windows

#: How the scores of an input longer than one window are made comparable (``ScorerConfig.cross_window``).
#: Every strategy scores an input that fits one window exactly as ``"per_window"`` does.
CROSS_WINDOW_STRATEGIES = ("per_window", "window_z", "window_share", "per_token", "overlap", "tournament", "pieces")

PIECE_TOKENS = 128  # text tokens per piece under the "pieces" strategy


def shifted_covering(units: Sequence[Unit], cap: int) -> list[Window]:
    """A second covering of ``units`` whose windows straddle those of ``pack(units, cap)``.

    The units are rotated by half the first window (the tail of one window joins the head of the next,
    and the last wraps round to the first), then packed again: every unit is seen once more, next to
    different neighbours.

    Example:
        >>> units = [Unit(i, None, "", 40) for i in range(6)]
        >>> [[u.owner for u in w] for w in pack(units, 100)]
        [[0, 1], [2, 3], [4, 5]]
        >>> [[u.owner for u in w] for w in shifted_covering(units, 100)]
        [[1, 2], [3, 4], [5, 0]]
    """
    first = pack(units, cap)[0] if units else []
    half = max(1, len(first) // 2)
    rotated = list(units[half:]) + list(units[:half])
    return pack(rotated, cap)


def split_pieces(builder: PromptBuilder, units: Sequence[Unit], piece_tokens: int = PIECE_TOKENS) -> list[Unit]:
    """Units longer than ``piece_tokens`` text tokens cut into pieces of about that many (each a unit of
    the same owner, titled like the chunk): more, shorter candidates per window."""
    out: list[Unit] = []
    for u in units:
        text_tokens = builder.plain_token_count(u.text)
        if text_tokens <= piece_tokens:
            out.append(u)
            continue
        title_cost = max(0, u.cost - text_tokens)
        n = -(-text_tokens // piece_tokens)
        out.extend(cut_unit(builder, u, title_cost, -(-text_tokens // n)))  # n pieces of even length
    return out


def plan_coverings(
    builder: PromptBuilder, chunks: Sequence[tuple[str | None, str]], cap: int, strategy: str = "per_window"
) -> list[list[Window]]:
    """The windows of every pass over ``chunks``: one covering (every chunk once), or two for ``"overlap"``.

    Only an input that needs more than one window is changed by a strategy: ``"overlap"`` adds
    :func:`shifted_covering`; ``"pieces"`` cuts chunks into pieces of :data:`PIECE_TOKENS` tokens
    (:func:`split_pieces`) before packing. The other strategies work on the scores (see
    :class:`~qr_integrations.core.aggregate.HeadAttention`) or re-score survivors (``"tournament"``).
    """
    check_cross_window(strategy)
    units = plan_units(builder, chunks, cap)
    windows = pack(units, cap)
    if len(windows) <= 1:
        return [windows]
    if strategy == "overlap":
        return [windows, shifted_covering(units, cap)]
    if strategy == "pieces":
        return [pack(split_pieces(builder, units), cap)]
    return [windows]


def check_cross_window(strategy: Any) -> str:
    """``strategy`` if it is one of :data:`CROSS_WINDOW_STRATEGIES`, else a ``ValueError`` naming them.

    Example:
        >>> check_cross_window("overlap")
        'overlap'
    """
    if not isinstance(strategy, str) or strategy not in CROSS_WINDOW_STRATEGIES:
        raise ValueError(f"cross_window must be one of {list(CROSS_WINDOW_STRATEGIES)}, got {strategy!r}")
    return strategy


def window_progress(tokens: int, windows: int, show: bool) -> Any:
    """A progress bar over the ``tokens`` of ``windows`` windows (``None`` when not ``show``).

    Counted in tokens, so one long window shows progress too, and windows split on OOM add nothing.

    Example:
        >>> window_progress(1000, 2, show=False) is None
        True
    """
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=tokens, desc=f"scoring {windows} window{'s' if windows > 1 else ''}", unit="tok", unit_scale=True)
