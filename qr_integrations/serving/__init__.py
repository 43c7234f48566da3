"""Serve QRHead re-ranking over HTTP in the wire formats existing rerank clients speak.

``qr-integrations serve`` runs :func:`create_app` under uvicorn; :mod:`qr_integrations.ray` runs the same
app on Ray Serve. Needs the ``serve`` extra: ``pip install 'qr-integrations[serve]'``.

Example:
    >>> from qr_integrations.serving import create_app
    >>> app = create_app({"device": "cpu"})  # then: uvicorn.run(app, port=8080)
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "qr_integrations.serving needs FastAPI and uvicorn: pip install 'qr-integrations[serve]'"
    ) from exc

from .app import create_app, serving_config, text_serving_config
from .service import API_KEY_ENV, SCORE_NORMALIZATIONS, RequestError, RerankService, ServeSettings

__all__ = [
    "API_KEY_ENV",
    "SCORE_NORMALIZATIONS",
    "RequestError",
    "RerankService",
    "ServeSettings",
    "create_app",
    "serving_config",
    "text_serving_config",
]
