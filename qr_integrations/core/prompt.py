"""The scoring prompt and its token spans.

The prompt follows QRHead's reference code (METHOD.md): one user turn holding

    Here are some paragraphs:

    [1] <title>
    <text>

    [2] ...

    Please find information that are relevant to the following query in the paragraphs above.

    Query: <query>

wrapped in the model's chat template.  The *query span* runs from the late instruction to the end of the
prompt (instruction, query, end of turn, assistant header); each *chunk span* covers the tokens of its
``[i] ...`` block.  Spans come from the tokenizer's character offsets.

User text (chunks and query) is tokenized with ``split_special_tokens=True``: a chunk that contains
``<|im_end|>`` or any other special-token string becomes ordinary text tokens and cannot end the user turn,
open a new one, or move a span.  The template's own markup is tokenized with special tokens enabled.

Lone UTF-16 surrogates (``"\\ud800"``..``"\\udfff"``, which a bad JSON or UTF-16 decode can leave in a Python
string) cannot be encoded as UTF-8, so the tokenizer rejects them. :func:`clean_text` replaces each one with
U+FFFD (the replacement character), one character for one, so the chunk is still scored and character
offsets are unchanged.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

Chunk = str | tuple[str, str] | Sequence[str] | Mapping[str, Any]

INTRO = "Here are some paragraphs:"
INSTRUCTION = "Please find information that are relevant to the following query in the paragraphs above."
SEPARATOR = "\n\n"
_SENTINEL = "\u2063QR_INTEGRATIONS_USER_CONTENT\u2063"
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def clean_text(text: str) -> str:
    """``text`` with every UTF-16 surrogate code point replaced by U+FFFD (same length, same offsets).

    Python strings may hold lone surrogates that no UTF-8 encoder (and so no tokenizer) accepts. Two
    surrogates that would form a pair in UTF-16 are still two code points here and become two U+FFFD;
    decode such data with ``errors="surrogatepass"`` first to keep the character.

    Example:
        >>> clean_text("ok \\ud800 ok")
        'ok \\ufffd ok'
        >>> clean_text("plain") == "plain"
        True
    """
    return _SURROGATE.sub(REPLACEMENT, text) if _SURROGATE.search(text) else text


def normalize_chunk(chunk: Any, index: int) -> tuple[str | None, str]:
    """Turn one accepted chunk form into ``(title, text)``.

    Accepted: a string; a ``(title, text)`` pair; a mapping with ``"text"`` (and optional ``"title"``).
    Lone surrogates in the title or text are replaced by U+FFFD (see :func:`clean_text`).

    Raises:
        TypeError: naming the chunk's index, for anything else (``None``, numbers, bytes...).

    Example:
        >>> normalize_chunk(("Paris", "Capital of France."), 0)
        ('Paris', 'Capital of France.')
    """
    if isinstance(chunk, str):
        return None, clean_text(chunk)
    if isinstance(chunk, Mapping):
        text = chunk.get("text")
        title = chunk.get("title")
        if isinstance(text, str) and (title is None or isinstance(title, str)):
            return (clean_text(title) if title else None), clean_text(text)
        raise TypeError(
            f"chunk {index}: a mapping chunk needs a string 'text' (and optional string 'title'), got {chunk!r:.80}"
        )
    if isinstance(chunk, (tuple, list)) and len(chunk) == 2 and all(isinstance(x, str) for x in chunk):
        return (clean_text(chunk[0]) if chunk[0] else None), clean_text(chunk[1])
    raise TypeError(
        f"chunk {index} is {type(chunk).__name__}; expected a string, a (title, text) pair of strings, "
        "or a mapping with 'text'"
    )


def as_list(items: Any, name: str = "chunks") -> list[Any]:
    """``items`` (any ordered iterable) as a list, or a ``TypeError`` that says what was passed.

    Example:
        >>> as_list(iter(["a", "b"]))
        ['a', 'b']
        >>> as_list("one long text")
        Traceback (most recent call last):
        ...
        TypeError: chunks must be a list of chunks, not one string; use trim() to split a long text
    """
    if isinstance(items, str):
        if name != "chunks":
            raise TypeError(f"{name} must be a list, not one string")
        raise TypeError("chunks must be a list of chunks, not one string; use trim() to split a long text")
    if isinstance(items, (Mapping, AbstractSet)):  # iterating gives keys, or an order scores cannot follow
        raise TypeError(f"{name} must be an ordered list{' of chunks' if name == 'chunks' else ''}, "
                        f"got {type(items).__name__}")
    try:
        return list(items)
    except TypeError as exc:
        raise TypeError(f"{name} must be a list, got {type(items).__name__}") from exc


def normalize_chunks(chunks: Any) -> list[tuple[str | None, str]]:
    """Every chunk of ``chunks`` as ``(title, text)`` (see :func:`normalize_chunk`).

    Example:
        >>> normalize_chunks(["a", {"title": "T", "text": "b"}])
        [(None, 'a'), ('T', 'b')]
    """
    return [normalize_chunk(c, i) for i, c in enumerate(as_list(chunks))]


def distinct_chunks(chunks: Sequence[tuple[str | None, str]]) -> tuple[list[tuple[str | None, str]], list[int]]:
    """Each distinct chunk once, in order of first appearance, and for every input chunk the index of its copy.

    Chunks whose title and text are equal once runs of whitespace are collapsed count as one. A causal model
    reads a later copy of a text as already seen, so copies written at different places score far apart
    (docs/position.md); the scorer under ``dedupe=True`` (the default) reads each distinct chunk once and
    gives every copy its score.

    Example:
        >>> distinct_chunks([(None, "a b"), ("T", "c"), (None, "a  b ")])
        ([(None, 'a b'), ('T', 'c')], [0, 1, 0])
    """
    seen: dict[tuple[str, str], int] = {}
    read: list[tuple[str | None, str]] = []
    index: list[int] = []
    for title, text in chunks:
        key = (" ".join((title or "").split()), " ".join(text.split()))
        if key not in seen:
            seen[key] = len(read)
            read.append((title, text))
        index.append(seen[key])
    return read, index


def spread_copies(scores: Sequence[float], index: Sequence[int] | None) -> list[float]:
    """Scores of the distinct chunks given back to every input chunk (``index`` from :func:`distinct_chunks`;
    ``None``: nothing repeated, the scores as they are).

    Example:
        >>> spread_copies([0.9, 0.1], [0, 1, 0])
        [0.9, 0.1, 0.9]
    """
    return list(scores) if index is None else [scores[i] for i in index]


def chunk_block(index: int, title: str | None, text: str) -> str:
    """The ``[i] title\\ntext`` block for chunk ``index`` (0-based; printed 1-based)."""
    body = f"{title}\n{text}" if title else text
    return f"[{index + 1}] {body}"


@dataclass(frozen=True)
class EncodedPrompt:
    """Token ids and spans of one scoring prompt.

    Attributes:
        prefix_ids: everything before the query span (template header, intro, chunk blocks).
        query_ids: the query span for the real query.
        null_ids: the query span for the null query (calibration).
        chunk_spans: ``(start, end)`` token ranges (end exclusive) of each chunk block inside the prefix.
    """

    prefix_ids: list[int]
    query_ids: list[int]
    null_ids: list[int]
    chunk_spans: list[tuple[int, int]]

    @property
    def num_tokens(self) -> int:
        """Length of the longer of the two full prompts."""
        return len(self.prefix_ids) + max(len(self.query_ids), len(self.null_ids))


class PromptBuilder:
    """Builds :class:`EncodedPrompt` objects for one tokenizer.

    Example:
        >>> from transformers import AutoTokenizer  # doctest: +SKIP
        >>> builder = PromptBuilder(AutoTokenizer.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct"))  # doctest: +SKIP
        >>> enc = builder.encode("who wrote Hamlet?", ["Shakespeare wrote Hamlet.", "Paris is in France."])  # doctest: +SKIP
        >>> len(enc.chunk_spans)  # doctest: +SKIP
        2
    """

    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError(
                "QRScorer needs a fast tokenizer (character offsets locate the chunk spans); "
                "load the model's tokenizer.json or install `tokenizers`"
            )
        self.tokenizer = tokenizer
        # the fast tokenizer's split_special_tokens switch is shared state: one call at a time
        self._lock = threading.RLock()
        self.head, self.tail = self._template_parts(tokenizer)
        self._head_ids = self._special(self.head)
        self._tail_ids = self._special(self.tail)

    @staticmethod
    def _template_parts(tokenizer: Any) -> tuple[str, str]:
        if getattr(tokenizer, "chat_template", None):
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=True
            )
            if isinstance(rendered, str) and rendered.count(_SENTINEL) == 1:
                head, tail = rendered.split(_SENTINEL)
                return head, tail
        bos = tokenizer.bos_token or ""
        return f"{bos}User: ", "\nAssistant:"

    def _special(self, text: str) -> list[int]:
        if not text:
            return []
        with self._lock:
            return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=False)["input_ids"])

    def _plain(self, text: str, offsets: bool = False) -> Any:
        text = clean_text(text)  # the tokenizer rejects lone surrogates; same length, so offsets hold
        with self._lock:
            return self.tokenizer(
                text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=offsets
            )

    def plain_encode(self, text: str) -> Any:
        """Tokenize user text (special-token strings stay text) with character offsets."""
        return self._plain(text, offsets=True)

    def plain_token_count(self, text: str) -> int:
        """Tokens of ``text`` tokenized as plain user text."""
        return len(self._plain(text)["input_ids"])

    def overhead_tokens(self, query: str, null_query: str) -> int:
        """Tokens a prompt costs besides its chunk blocks (template, intro, instruction, query)."""
        enc = self.encode(query, [], null_query=null_query)
        return enc.num_tokens

    def query_span_ids(self, query: str) -> list[int]:
        """The token ids of the query span for ``query``."""
        text = f"{INSTRUCTION}{SEPARATOR}Query: {query}"
        return list(self._plain(text)["input_ids"]) + self._tail_ids

    def encode(
        self, query: str, chunks: Sequence[tuple[str | None, str]], null_query: str = "N/A"
    ) -> EncodedPrompt:
        """Encode ``query`` over normalized ``(title, text)`` chunks."""
        pieces = [INTRO]
        char_spans: list[tuple[int, int]] = []
        pos = len(INTRO)
        for i, (title, text) in enumerate(chunks):
            block = chunk_block(i, title, text)
            start = pos + len(SEPARATOR)
            pieces.append(SEPARATOR + block)
            pos = start + len(block)
            char_spans.append((start, pos))
        pieces.append(SEPARATOR)
        context = "".join(pieces)
        enc = self._plain(context, offsets=True)
        ids = list(enc["input_ids"])
        offsets = list(enc["offset_mapping"])
        base = len(self._head_ids)
        spans: list[tuple[int, int]] = []
        tok = 0
        for cs, ce in char_spans:
            while tok < len(offsets) and offsets[tok][1] <= cs:
                tok += 1
            start = tok
            end = start
            while end < len(offsets) and offsets[end][0] < ce:
                end += 1
            if end == start:  # cannot happen for a non-empty block; guard anyway
                end = min(start + 1, len(ids))
            spans.append((base + start, base + end))
            tok = max(start, end - 1)
        return EncodedPrompt(
            prefix_ids=self._head_ids + ids,
            query_ids=self.query_span_ids(query),
            null_ids=self.query_span_ids(null_query),
            chunk_spans=spans,
        )
