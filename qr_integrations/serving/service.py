"""The rerank service behind every HTTP front end: request checking and the wire formats, no web framework.

Each public method takes a decoded JSON body and returns the JSON-ready response for one route, or raises
:class:`RequestError` with the HTTP status and a message that says what was wrong. The FastAPI app
(:func:`qr_integrations.serving.create_app`) and the Ray Serve deployment both route requests here, so the
formats and the checks live in one place.

Wire formats (the clients that send them, with a custom base URL):

* TEI ``POST /rerank {query, texts, return_text?, raw_scores?, truncate?}`` -> ``[{index, score, text?}]``,
  best first (llama-index-postprocessor-tei-rerank);
* Infinity ``POST /rerank {query, documents, return_documents?, raw_scores?, top_n?, model?}`` ->
  ``{object, id, created, model, usage, results: [{index, relevance_score, document?}]}`` with ``document``
  a string (langchain-community's ``InfinityRerank``);
* Jina and Cohere v1 ``POST /v1/rerank {query, documents, top_n?, return_documents?, model?}`` -> ``{id, model,
  usage, meta, results: [{index, relevance_score, document?: {text}}]}`` (llama-index-postprocessor-jinaai-rerank,
  ``cohere.Client``);
* Cohere v2 ``POST /v2/rerank {model, query, documents, top_n?, max_tokens_per_doc?}`` -> ``{id, results: [{index,
  relevance_score}], meta}`` (``cohere.ClientV2``, llama-index-postprocessor-cohere-rerank, langchain-cohere);
* our own ``POST /trim {query, text | chunks, max_tokens?, top_n?, keep_order?}`` -> :meth:`TrimResult.to_dict`.

Scores are the floats :meth:`QRScorer.score` gives for the same query and documents under the service's
config (``ServeSettings.score_normalization="none"``, the default), or those scores scaled to [0, 1] within
the request (``"minmax"``: the best document 1.0, the worst 0.0, the order unchanged). A request with
``raw_scores: true`` (TEI, Infinity) always gets the raw floats. ``/trim`` returns raw scores.

Candidate lists (the rerank routes) come best first from a retriever: they are scored by ``scorer``, whose
config is for ranked input. ``/trim`` takes a document's text or pieces, in no retriever's order: it is
scored by ``text_scorer`` (the scorer's own defaults), as ``qr-integrations trim`` scores it.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..core import QRScorer
from ..core.chunking import split_text

#: Environment variable read for the API key when none is passed.
API_KEY_ENV = "QR_INTEGRATIONS_API_KEY"

#: ``ServeSettings.score_normalization``: ``"none"`` returns QRHead's raw floats; ``"minmax"`` scales each
#: request's scores to [0, 1] (see :func:`minmax_scores`).
SCORE_NORMALIZATIONS = ("none", "minmax")


def minmax_scores(scores: list[float]) -> list[float]:
    """``scores`` scaled to [0, 1] within one request: the best 1.0, the worst 0.0, the order unchanged.

    Equal scores (one document, or all tied) all get 1.0: none is worse than the best.

    Example:
        >>> minmax_scores([1.0, 3.0, 2.0]), minmax_scores([0.3])
        ([0.0, 1.0, 0.5], [1.0])
    """
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi <= lo:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def json_value(value: Any) -> str:
    """How a JSON value reads in an error message: ``null``, ``true``, ``3``, ``"yes"`` (cut at 80 characters),
    ``an array``, ``an object``.

    Example:
        >>> [json_value(v) for v in (None, True, 3, "yes", [1], {"a": 1})]
        ['null', 'true', '3', '"yes"', 'an array', 'an object']
    """
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not from a JSON body: name its type
        return type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


class RequestError(Exception):
    """A request the client must change: ``status`` is the HTTP status (4xx), ``message`` says what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def to_json(self) -> dict[str, Any]:
        """The JSON error body (``message`` is what Cohere's and TEI's clients print)."""
        return {"error": self.message, "message": self.message, "status": self.status}


@dataclass(frozen=True)
class ServeSettings:
    """Limits and access of a rerank service.

    Attributes:
        api_key: when set, requests must send ``Authorization: Bearer <key>`` (or the bare key, as the TEI
            client's ``auth_token`` does); when ``None`` any token, or none, is accepted.
        max_documents: the most documents (or chunks) in one request; more gets HTTP 413.
        max_body_bytes: the largest request body; larger gets HTTP 413.
        model_name: the name reported in responses and ``/info`` (default: the loaded model's name).
        score_normalization: ``"none"`` (QRHead's raw floats) or ``"minmax"`` (each request's scores scaled to
            [0, 1]: the best 1.0, the worst 0.0); TEI's and Infinity's ``raw_scores: true`` gets the raw floats.

    Example:
        >>> ServeSettings(max_documents=100).max_documents
        100
    """

    api_key: str | None = None
    max_documents: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    model_name: str | None = None
    score_normalization: str = "none"

    def __post_init__(self) -> None:
        if type(self.max_documents) is not int or self.max_documents < 1:
            raise ValueError(f"max_documents must be a positive integer, got {self.max_documents!r}")
        if type(self.max_body_bytes) is not int or self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be an integer >= 1024, got {self.max_body_bytes!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()):
            raise ValueError("api_key must be a non-empty string or None")
        if self.score_normalization not in SCORE_NORMALIZATIONS:
            raise ValueError(f"score_normalization must be one of {list(SCORE_NORMALIZATIONS)}, "
                             f"got {self.score_normalization!r}")


# ------------------------------------------------------------------------------------------ field checks


def _body(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise RequestError(400, f"the request body must be a JSON object, got {json_value(body)}")
    return body


def _query(body: Mapping[str, Any]) -> str:
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        got = "missing" if "query" not in body else json_value(query)
        raise RequestError(400, f'"query" must be a non-empty string, got {got}')
    return query


def _flag(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(400, f'"{key}" must be true or false, got {json_value(value)}')
    return value


def _positive(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise RequestError(400, f'"{key}" must be a positive integer or null, got {json_value(value)}')
    return value


class RerankService:
    """One loaded :class:`QRScorer` behind the rerank wire formats; safe to call from many threads.

    Args:
        scorer: the scorer of candidate lists (its config decides model, heads, layout, device, threads).
        settings: limits, the API key and the score normalisation.
        text_scorer: the scorer of ``/trim`` (texts and pieces in no retriever's order); default ``scorer``.

    Example:
        >>> service = RerankService(QRScorer(device="cpu"))
        >>> out = service.cohere_v2({"query": "Which fruit has potassium?",
        ...                          "documents": ["Paris is in France.", "Bananas have potassium."]})
        >>> [r["index"] for r in out["results"]]
        [1, 0]
    """

    def __init__(self, scorer: QRScorer, settings: ServeSettings | None = None, *,
                 text_scorer: QRScorer | None = None) -> None:
        self.scorer = scorer
        self.text_scorer = text_scorer if text_scorer is not None else scorer
        self.settings = settings or ServeSettings()

    @property
    def model_name(self) -> str:
        """The model name reported to clients."""
        return self.settings.model_name or self.scorer.loaded.name

    # ------------------------------------------------------------------ access and limits
    def check_auth(self, authorization: str | None) -> None:
        """Raise 401 unless the ``Authorization`` header carries the key (any value when no key is set)."""
        key = self.settings.api_key
        if key is None:
            return
        given = (authorization or "").strip()
        if given.lower().startswith("bearer "):
            given = given[7:].strip()
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise RequestError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")

    def check_size(self, num_bytes: int) -> None:
        """Raise 413 for a body over ``max_body_bytes``."""
        if num_bytes > self.settings.max_body_bytes:
            raise RequestError(413, f"request body of {num_bytes} bytes is over the limit of "
                                    f"{self.settings.max_body_bytes}; send fewer or shorter documents")

    def _check_count(self, n: int, what: str, fix: str = "split the request") -> None:
        """Raise 413 for more than ``max_documents`` documents or chunks."""
        if n > self.settings.max_documents:
            raise RequestError(413, f"{n} {what} in one request is over the limit of {self.settings.max_documents}; {fix}")

    def _documents(self, body: Mapping[str, Any], key: str, objects: bool) -> list[str]:
        docs = body.get(key)
        if not isinstance(docs, list):
            got = "missing" if key not in body else json_value(docs)
            raise RequestError(400, f'"{key}" must be an array of strings, got {got}')
        self._check_count(len(docs), key)
        out: list[str] = []
        for i, doc in enumerate(docs):
            if objects and isinstance(doc, Mapping) and isinstance(doc.get("text"), str):
                doc = doc["text"]
            if not isinstance(doc, str):
                what = 'a string or an object with a "text" string' if objects else "a string"
                got = 'an object without a "text" string' if objects and isinstance(doc, Mapping) else json_value(doc)
                raise RequestError(400, f'"{key}"[{i}] must be {what}, got {got}')
            out.append(doc)
        return out

    def _truncate(self, docs: list[str], max_tokens: int | None) -> list[str]:
        """Each document cut to its first ``max_tokens`` tokens (at a token's end, as plain user text)."""
        if max_tokens is None:
            return docs
        builder = self.scorer.loaded.builder
        out = []
        for doc in docs:
            offsets = builder.plain_encode(doc)["offset_mapping"]
            out.append(doc if len(offsets) <= max_tokens else doc[: offsets[max_tokens - 1][1]])
        return out

    def _ranked(self, query: str, docs: list[str], top_n: int | None, raw: bool = False) -> list[tuple[int, float]]:
        """``(index, score)`` best first (ties in input order), the best ``top_n``; scores normalised by the
        settings over every document of the request unless ``raw``."""
        if not docs:
            return []
        scores = self.scorer.score(query, docs)
        if not raw and self.settings.score_normalization == "minmax":
            scores = minmax_scores(scores)
        order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))
        return [(i, scores[i]) for i in order[:top_n]]

    def _usage(self, query: str, docs: list[str]) -> dict[str, int]:
        tokens = self.scorer.count_tokens(query) + sum(self.scorer.count_tokens(d) for d in docs)
        return {"prompt_tokens": tokens, "total_tokens": tokens}

    # ------------------------------------------------------------------ routes
    def tei(self, body: Any) -> list[dict[str, Any]]:
        """TEI's ``/rerank`` (``texts``): every text, best first, as ``{index, score[, text]}``."""
        body = _body(body)
        query = _query(body)
        texts = self._documents(body, "texts", objects=False)
        raw = _flag(body, "raw_scores", False)
        _flag(body, "truncate", False)
        return_text = _flag(body, "return_text", False)
        out = []
        for index, score in self._ranked(query, texts, None, raw):
            row: dict[str, Any] = {"index": index, "score": score}
            if return_text:
                row["text"] = texts[index]
            out.append(row)
        return out

    def infinity(self, body: Any) -> dict[str, Any]:
        """Infinity's ``/rerank`` (``documents``): ``results`` with ``document`` as a string."""
        body = _body(body)
        query = _query(body)
        docs = self._documents(body, "documents", objects=True)
        top_n = _positive(body, "top_n")
        raw = _flag(body, "raw_scores", False)
        return_documents = _flag(body, "return_documents", False)
        results = []
        for index, score in self._ranked(query, docs, top_n, raw):
            row: dict[str, Any] = {"relevance_score": score, "index": index}
            row["document"] = docs[index] if return_documents else None
            results.append(row)
        return {"object": "rerank", "id": _new_id(), "created": int(time.time()), "model": self.model_name,
                "usage": self._usage(query, docs), "results": results}

    def v1(self, body: Any) -> dict[str, Any]:
        """Jina's and Cohere v1's ``/v1/rerank``: documents come back as ``{text}`` unless
        ``return_documents`` is false."""
        body = _body(body)
        query = _query(body)
        docs = self._documents(body, "documents", objects=True)
        top_n = _positive(body, "top_n")
        return_documents = _flag(body, "return_documents", True)
        results = []
        for index, score in self._ranked(query, docs, top_n):
            row: dict[str, Any] = {"index": index, "relevance_score": score}
            if return_documents:
                row["document"] = {"text": docs[index]}
            results.append(row)
        return {"id": _new_id(), "model": self.model_name, "usage": self._usage(query, docs),
                "results": results, "meta": _meta("1")}

    def cohere_v2(self, body: Any) -> dict[str, Any]:
        """Cohere v2's ``/v2/rerank``: ``results`` of ``{index, relevance_score}``; ``max_tokens_per_doc``
        cuts each document to its first N tokens before scoring."""
        body = _body(body)
        query = _query(body)
        docs = self._documents(body, "documents", objects=True)
        top_n = _positive(body, "top_n")
        docs = self._truncate(docs, _positive(body, "max_tokens_per_doc"))
        results = [{"index": i, "relevance_score": s} for i, s in self._ranked(query, docs, top_n)]
        return {"id": _new_id(), "results": results, "meta": _meta("2")}

    def trim(self, body: Any) -> dict[str, Any]:
        """Our ``/trim``: ``query`` and a ``text`` (split into chunks) or ``chunks``; ``max_tokens`` and/or
        ``top_n``; ``keep_order`` (default true). The body of :meth:`TrimResult.to_dict`, with raw scores,
        from ``text_scorer``: what ``qr-integrations trim --json`` prints for the same input and config."""
        body = _body(body)
        query = _query(body)
        text, chunks = body.get("text"), body.get("chunks")
        if (text is None) == (chunks is None):
            raise RequestError(400, 'send exactly one of "text" (a string to split) or "chunks" (an array)')
        source: Any
        if text is not None:
            if not isinstance(text, str):
                raise RequestError(400, f'"text" must be a string, got {json_value(text)}')
            self.check_size(len(text.encode("utf-8")))
            # split as trim() would, and check the count before any scoring
            scorer = self.text_scorer
            source = list(split_text(text, scorer.config.chunk_size, scorer.count_tokens))
            self._check_count(len(source), "chunks (after splitting the text)", "send a shorter text")
        else:
            source = self._chunks(chunks)
        result = self.text_scorer.trim(query, source, max_tokens=_positive(body, "max_tokens"),
                                  top_n=_positive(body, "top_n"), keep_order=_flag(body, "keep_order", True))
        return result.to_dict()

    def _chunks(self, chunks: Any) -> list[Any]:
        if not isinstance(chunks, list):
            raise RequestError(400, f'"chunks" must be an array, got {json_value(chunks)}')
        self._check_count(len(chunks), "chunks")
        out: list[Any] = []
        for i, c in enumerate(chunks):
            if isinstance(c, str):
                out.append(c)
            elif isinstance(c, Mapping) and isinstance(c.get("text"), str) and isinstance(c.get("title"), (str, type(None))):
                out.append({"text": c["text"], "title": c.get("title")})
            else:
                got = 'an object without a "text" string' if isinstance(c, Mapping) else json_value(c)
                if isinstance(c, Mapping) and isinstance(c.get("text"), str):
                    got = f'an object whose "title" is {json_value(c.get("title"))}'
                raise RequestError(400, f'"chunks"[{i}] must be a string or an object with a "text" string '
                                        f'and an optional "title" string, got {got}')
        return out

    def info(self) -> dict[str, Any]:
        """What ``GET /info`` reports: model, head set, window, layouts (candidate lists, ``/trim``), score
        normalisation and limits."""
        scorer = self.scorer
        heads = scorer.head_set
        return {
            "version": __version__,
            "model": self.model_name,
            "heads": {"name": heads.name, "count": len(heads.heads) if heads.heads is not None else "all",
                      "spec": heads.to_string()},
            "window_tokens": scorer.window_tokens,
            "layout": scorer.config.layout,
            "trim_layout": self.text_scorer.config.layout,
            "score_normalization": self.settings.score_normalization,
            "device": str(scorer.loaded.device),
            "prefix_cache": _cache_info(scorer),
            "max_documents": self.settings.max_documents,
            "max_body_bytes": self.settings.max_body_bytes,
            "auth": self.settings.api_key is not None,
        }


def _cache_info(scorer: QRScorer) -> dict[str, Any] | None:
    cache = scorer.prefix_cache
    if cache is None:
        return None
    return {"max_mb": scorer.config.prefix_cache_mb, "used_mb": round(cache.nbytes / 2**20, 1), "entries": len(cache),
            "hits": cache.hits, "misses": cache.misses}


def _new_id() -> str:
    return uuid.uuid4().hex


def _meta(version: str) -> dict[str, Any]:
    return {"api_version": {"version": version}, "billed_units": {"search_units": 1}}
