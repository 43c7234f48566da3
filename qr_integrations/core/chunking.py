"""Splitting a long text into chunks for :meth:`QRScorer.trim`.

Paragraphs (separated by blank lines) are the chunks. A paragraph longer than ``chunk_size`` tokens is
split into sentences packed greedily up to ``chunk_size``; a sentence longer than that is split between
words. Nothing is dropped: joining the chunks' words gives back the text's words.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+")


def _pack(parts: list[str], chunk_size: int, count: Callable[[str], int], joiner: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    used = 0
    for part in parts:
        n = count(part)
        if current and used + n > chunk_size:
            out.append(joiner.join(current))
            current, used = [], 0
        current.append(part)
        used += n
    if current:
        out.append(joiner.join(current))
    return out


def split_text(text: str, chunk_size: int, count_tokens: Callable[[str], int]) -> list[str]:
    """Split ``text`` into chunks of at most about ``chunk_size`` tokens.

    Args:
        text: the long text.
        chunk_size: the largest chunk, in tokens of ``count_tokens``.
        count_tokens: a function giving the token count of a string.

    Example:
        >>> split_text("One. Two.\\n\\nThree four five.", 100, lambda s: len(s.split()))
        ['One. Two.', 'Three four five.']
        >>> split_text("a b c d e", 2, lambda s: len(s.split()))
        ['a b', 'c d', 'e']
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 token, got {chunk_size}")
    chunks: list[str] = []
    for para in _PARAGRAPH.split(text):
        para = para.strip()
        if not para:
            continue
        if count_tokens(para) <= chunk_size:
            chunks.append(para)
            continue
        pieces: list[str] = []
        for sentence in _SENTENCE.split(para):
            if count_tokens(sentence) <= chunk_size:
                pieces.append(sentence)
            else:
                pieces.extend(_pack(sentence.split(), chunk_size, count_tokens, " "))
        chunks.extend(_pack(pieces, chunk_size, count_tokens, " "))
    return chunks
