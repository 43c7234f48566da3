"""A lexical prior for chunks that come in no retriever's order, fused with QRHead's scores.

When chunks come from a retriever, its ranking is the natural second opinion (the adapters fuse with it,
:mod:`.fusion`). A document split by ``trim``, a chat history or a row of a file has no such ranking, and a
small model's attention then says much about where a chunk is written. BM25 computed over the same chunks
(the chunks themselves are the corpus) knows nothing of position, costs no forward pass, and is fused
with QRHead's scores by the same weighted fusion the adapters use:
``weight * minmax(qrhead) + (1 - weight) * minmax(bm25)`` within the query.

BM25 here is bm25s (Lù, 2024) with ``k1=0.9, b=0.4``, English stop words and the Snowball English stemmer
(PyStemmer): the settings of BEIR's BM25 baseline, which the benchmarks compare against.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from .fusion import weighted_fusion

#: ``ScorerConfig.prior`` values: no prior, or BM25 over the chunks.
PRIORS: tuple[str, ...] = ("none", "bm25")

_STEMMER: Any = None
_LOCK = threading.Lock()


def _stemmer() -> Any:
    global _STEMMER
    with _LOCK:
        if _STEMMER is None:
            import Stemmer

            _STEMMER = Stemmer.Stemmer("english")
        return _STEMMER


def bm25_scores(query: str, texts: Sequence[str]) -> list[float]:
    """Okapi BM25 scores of ``texts`` for ``query``, with ``texts`` as the whole corpus.

    Example:
        >>> s = bm25_scores("Which fruit has potassium?", ["Paris is in France.", "Bananas have potassium."])
        >>> s[1] > s[0] == 0.0
        True
        >>> bm25_scores("potassium", ["", "the and of"])
        [0.0, 0.0]
    """
    import bm25s

    if not texts:
        return []
    stemmer = _stemmer()
    tokens = bm25s.tokenize(list(texts), stopwords="en", stemmer=stemmer, show_progress=False)
    if not tokens.vocab:  # nothing but stop words and punctuation: no term can match
        return [0.0] * len(texts)
    index = bm25s.BM25(k1=0.9, b=0.4)
    index.index(tokens, show_progress=False)
    words = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False)[0]
    if not words:
        return [0.0] * len(texts)
    return [float(x) for x in index.get_scores(words)]


def check_prior(prior: object) -> str:
    """``prior`` if it is a known prior, else a ``ValueError`` that lists them.

    Example:
        >>> check_prior("bm25")
        'bm25'
    """
    if not isinstance(prior, str) or prior not in PRIORS:
        raise ValueError(f"prior must be one of {list(PRIORS)}, got {prior!r}")
    return prior


def with_prior(scores: Sequence[float], query: str, texts: Sequence[str], prior: str, weight: float) -> list[float]:
    """QRHead ``scores`` fused with ``prior`` computed over the chunk ``texts`` (unchanged for ``"none"``).

    Fused scores lie in ``[0, 1]``: ``weight`` is QRHead's share. A single chunk keeps its QRHead score
    (there is nothing to rank it against).

    Example:
        >>> with_prior([0.2, 0.1], "Which fruit has potassium?", ["Paris.", "Bananas have potassium."], "bm25", 0.5)
        [0.5, 0.5]
        >>> with_prior([0.2, 0.1], "q", ["a", "b"], "none", 0.5)
        [0.2, 0.1]
    """
    check_prior(prior)
    out = [float(s) for s in scores]
    if prior == "none" or len(out) < 2:
        return out
    return weighted_fusion(out, bm25_scores(query, texts), weight)
