"""The FastAPI app: the rerank routes of :mod:`.service` over HTTP, with auth, size limits and JSON errors."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..core import QRScorer, ScorerConfig
from ..core.config import config_for_ranked_input, read_config_mapping
from .service import API_KEY_ENV, RequestError, RerankService, ServeSettings

logger = logging.getLogger("qr_integrations.serving")

#: MiB of prepared prefixes a server keeps (LRU) unless the config names ``prefix_cache_mb``: requests over
#: the same documents with a new query (an agent's follow-ups, several clients on one pool) then cost only
#: the query's tail. One cached 8k-token prefix takes about 288 MiB with the default heads.
SERVING_PREFIX_CACHE_MB = 512


def serving_config(config: ScorerConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None) -> ScorerConfig:
    """The scorer config a server runs: ``config`` with ``layout: reversed`` and ``prefix_cache_mb: 512``
    unless it names them.

    Rerank clients (LlamaIndex's, LangChain's, Cohere's) send candidates in the retriever's order, best
    first; see :func:`qr_integrations.core.config.config_for_ranked_input`. A :class:`ScorerConfig` object
    is taken as it is.

    Example:
        >>> cfg = serving_config({"heads": "all"})
        >>> cfg.layout, cfg.prefix_cache_mb, serving_config({"layout": "input", "prefix_cache_mb": 0}).prefix_cache_mb
        ('reversed', 512, 0)
    """
    if isinstance(config, ScorerConfig):
        return config
    return config_for_ranked_input(_with_prefix_cache(config))


def text_serving_config(config: ScorerConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None) -> ScorerConfig:
    """The scorer config ``POST /trim`` runs: ``config`` with the scorer's own defaults for what it does not
    name (layout, position corrections), and ``prefix_cache_mb: 512`` unless it names one.

    ``/trim`` takes a document's text (or its pieces) in no retriever's order, so it is scored as
    ``qr-integrations trim`` and :meth:`QRScorer.trim` score it; a config that names a layout still wins.
    A :class:`ScorerConfig` object is taken as it is.

    Example:
        >>> text_serving_config(None).layout == ScorerConfig().layout, text_serving_config("layout: both").layout
        (True, 'both')
    """
    if isinstance(config, ScorerConfig):
        return config
    return ScorerConfig.load(_with_prefix_cache(config))


def _with_prefix_cache(config: Mapping[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any]:
    data = {} if config is None else read_config_mapping(config)
    options = data.get("scorer_options") or {}
    if "prefix_cache_mb" not in data and "prefix_cache_mb" not in options:
        data["prefix_cache_mb"] = SERVING_PREFIX_CACHE_MB
    return data


def create_app(
    config: ScorerConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    scorer: QRScorer | None = None,
    settings: ServeSettings | None = None,
) -> FastAPI:
    """The ASGI app of ``qr-integrations serve``, to run with uvicorn or mount in your own app.

    The model loads here, so a bad model, head set or device fails now, not at the first request.

    Args:
        config: scorer config (object, dict, YAML/JSON text or file). Candidate lists (the rerank routes) are
            scored under :func:`serving_config`, ``/trim`` under :func:`text_serving_config` (both share the
            model). Ignored when ``scorer`` is given.
        scorer: an already built scorer to serve on every route (shared with other code in the process).
        settings: limits, API key and score normalisation; the key defaults to ``$QR_INTEGRATIONS_API_KEY``
            when set.

    Example:
        >>> from fastapi.testclient import TestClient
        >>> client = TestClient(create_app({"device": "cpu"}))
        >>> r = client.post("/v2/rerank", json={"query": "Which fruit has potassium?",
        ...                                     "documents": ["Paris is in France.", "Bananas have potassium."]})
        >>> [x["index"] for x in r.json()["results"]]
        [1, 0]
    """
    text_scorer = scorer
    if scorer is None:
        ranked, text = serving_config(config), text_serving_config(config)
        scorer = QRScorer.from_config(ranked)
        text_scorer = scorer if text == ranked else QRScorer.from_config(text)
    if settings is None:
        settings = ServeSettings(api_key=os.environ.get(API_KEY_ENV) or None)
    service = RerankService(scorer, settings, text_scorer=text_scorer)
    _ = scorer.loaded, scorer.head_set  # load now: errors at start-up, and /health means ready
    _ = service.text_scorer.loaded, service.text_scorer.head_set

    app = FastAPI(
        title="qr-integrations rerank server",
        version=__version__,
        description="QRHead re-ranking (query-focused retrieval heads) behind the TEI, Infinity, Jina and Cohere "
        "rerank APIs.",
    )
    app.state.service = service

    async def handle(request: Request, route: Callable[[Any], Any]) -> JSONResponse:
        try:
            service.check_auth(request.headers.get("authorization"))
            body = await _read_json(request, service)
            out = await run_in_threadpool(route, body)
        except RequestError as exc:
            return JSONResponse(exc.to_json(), status_code=exc.status)
        except (ValueError, TypeError) as exc:  # the scorer's own input checks: the client's to fix
            return JSONResponse(RequestError(400, str(exc)).to_json(), status_code=400)
        return JSONResponse(out)

    @app.post("/rerank", summary="TEI (body with texts) or Infinity (body with documents)")
    async def rerank(request: Request) -> JSONResponse:
        def dispatch(body: Any) -> Any:
            if not isinstance(body, Mapping):
                return service.tei(body)  # says that the body must be a JSON object
            given = [k for k in ("texts", "documents") if body.get(k) is not None]
            if given == ["texts"]:
                return service.tei(body)
            if given == ["documents"]:
                return service.infinity(body)
            if given:
                raise RequestError(400, 'send "texts" (TEI\'s format) or "documents" (Infinity\'s), not both')
            raise RequestError(400, 'send "texts" (TEI\'s format) or "documents" (Infinity\'s and Jina\'s)')

        return await handle(request, dispatch)

    @app.post("/v1/rerank", summary="Jina and Cohere v1")
    async def rerank_v1(request: Request) -> JSONResponse:
        return await handle(request, service.v1)

    @app.post("/v2/rerank", summary="Cohere v2")
    async def rerank_v2(request: Request) -> JSONResponse:
        return await handle(request, service.cohere_v2)

    @app.post("/trim", summary="keep the chunks that matter, within a token budget and/or a count")
    async def trim(request: Request) -> JSONResponse:
        return await handle(request, service.trim)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    async def info(request: Request) -> JSONResponse:
        try:
            service.check_auth(request.headers.get("authorization"))
        except RequestError as exc:
            return JSONResponse(exc.to_json(), status_code=exc.status)
        return JSONResponse(service.info())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse(RequestError(exc.status_code, message).to_json(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(RequestError(400, str(exc)).to_json(), status_code=400)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("request %s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}", "status": 500}, status_code=500)

    return app


async def _read_json(request: Request, service: RerankService) -> Any:
    """The request's JSON body, read at most ``max_body_bytes`` (413 beyond), 400 when it is not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        service.check_size(int(declared))
    body = bytearray()
    async for piece in request.stream():
        body.extend(piece)
        service.check_size(len(body))
    if not body:
        raise RequestError(400, "empty request body: send a JSON object")
    try:
        return json.loads(bytes(body))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from exc


__all__ = ["SERVING_PREFIX_CACHE_MB", "create_app", "serving_config", "text_serving_config"]
