"""QRHead on a Ray cluster: the rerank server on Ray Serve, and batch re-ranking with Ray Data.

Needs the ``ray`` extra: ``pip install 'qr-integrations[ray]'`` (``ray[data,serve]``). Each Serve replica
and each Ray Data actor loads one model; the work is spread by Ray, not by this module.

Chunks are taken to arrive best first (retriever output), so the prompt layout is ``reversed`` unless the
config names one (:func:`qr_integrations.core.config.config_for_ranked_input`); the server's ``/trim`` reads
texts with the scorer's defaults, as in :func:`qr_integrations.serving.create_app`. Ray starts actors with
``OMP_NUM_THREADS=1``; set ``num_threads`` in the config to pin torch's threads (the count changes the last
digits of scores).

Example:
    >>> import ray
    >>> from qr_integrations.ray import rerank_dataset, start_local_ray
    >>> start_local_ray(num_cpus=2)  # doctest: +SKIP
    >>> ds = ray.data.from_items([{"query": "Which fruit has potassium?",
    ...                            "chunks": ["Paris is in France.", "Bananas have potassium."]}])  # doctest: +SKIP
    >>> rerank_dataset(ds, config={"device": "cpu"}).take(1)[0]["ranking"]  # doctest: +SKIP
    [1, 0]
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any

try:
    import ray
    from ray import serve
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("qr_integrations.ray needs Ray: pip install 'qr-integrations[ray]'") from exc

from .core import QRScorer, ScorerConfig
from .core.config import config_for_ranked_input, read_config_mapping
from .rankfile import RANKING_COLUMN, SCORES_COLUMN, plain, ranking_of

ConfigSource = ScorerConfig | Mapping[str, Any] | str | os.PathLike[str] | None

#: Environment a quiet local cluster starts with (each only when not already set).
LOCAL_RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage reporting (CI has no network)
    "RAY_AUTH_MODE": "disabled",  # Ray 2.5x turns token auth on by default; a local cluster needs none
    # Serve's proxy gets 5 s to report ready; a busy small machine needs longer (its workers run at nice 15)
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
}


def start_local_ray(num_cpus: int | None = None, object_store_mb: int = 256, **init_kwargs: Any) -> None:
    """Start (or join, when one is running in this process) a quiet local Ray: no dashboard, no usage
    stats, no worker logs or INFO lines on the driver, a capped object store. For a real cluster call
    ``ray.init(address=...)`` instead.

    Example:
        >>> start_local_ray(num_cpus=2)  # doctest: +SKIP
    """
    if ray.is_initialized():
        return
    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)
    init_kwargs.setdefault("logging_level", logging.WARNING)
    ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=object_store_mb * 1024 * 1024,
             log_to_driver=False, **init_kwargs)


def _config_dict(config: ConfigSource) -> dict[str, Any]:
    return config_for_ranked_input(config).to_dict()


def _serve_config(config: ConfigSource) -> dict[str, Any]:
    """The config a Serve replica builds its app from: checked here, on the driver, but passed as the user
    gave it, so that each route fills in what it does not name for its own input (candidate lists: the
    ranked-input settings; ``/trim``: the scorer's defaults). A :class:`ScorerConfig` names every key."""
    from .serving import serving_config, text_serving_config

    if isinstance(config, ScorerConfig):
        return config.to_dict()
    data = {} if config is None else read_config_mapping(config)
    serving_config(data), text_serving_config(data)  # a bad key or value fails now, not in every replica
    return data


# ------------------------------------------------------------------------------------------ Ray Serve


@serve.ingress()
class QRHeadRerankServer:
    """A Serve replica: one model behind the app of :func:`qr_integrations.serving.create_app`."""

    def __init__(self, config: dict[str, Any], settings: dict[str, Any]) -> None:
        self._config = config
        self._settings = settings

    def __serve_build_asgi_app__(self) -> Any:
        from .serving import ServeSettings, create_app

        return create_app(self._config, settings=ServeSettings(**self._settings))


def serve_app(
    config: ConfigSource = None,
    *,
    num_replicas: int = 1,
    ray_actor_options: dict[str, Any] | None = None,
    settings: Any = None,
    deployment_options: dict[str, Any] | None = None,
) -> Any:
    """A Ray Serve application with the routes of ``qr-integrations serve`` (one model per replica).

    Args:
        config: scorer config (object, dict, YAML/JSON text or file).
        num_replicas: replicas; Serve routes requests among them.
        ray_actor_options: per replica, e.g. ``{"num_gpus": 1}`` for a GPU each (default ``{"num_cpus": 1}``).
        settings: a :class:`qr_integrations.serving.ServeSettings`; the API key defaults to
            ``$QR_INTEGRATIONS_API_KEY`` as read here, on the driver.
        deployment_options: more ``Deployment.options`` (``autoscaling_config``, ``max_ongoing_requests``,
            ...).

    Returns:
        A ``ray.serve.Application``: ``serve.run(serve_app(...), route_prefix="/")``.

    Example:
        >>> from ray import serve
        >>> handle = serve.run(serve_app({"device": "cpu", "num_threads": 1}), route_prefix="/")  # doctest: +SKIP
    """
    from .serving import API_KEY_ENV, ServeSettings

    if type(num_replicas) is not int or num_replicas < 1:
        raise ValueError(f"num_replicas must be a positive integer, got {num_replicas!r}")
    if settings is None:
        settings = ServeSettings(api_key=os.environ.get(API_KEY_ENV) or None)
    options = dict(ray_actor_options) if ray_actor_options else {"num_cpus": 1}
    deployment: Any = serve.deployment(QRHeadRerankServer)  # Ray's stubs type the class form as a decorator
    deployment = deployment.options(
        name="qr-integrations", num_replicas=num_replicas, ray_actor_options=options, **(deployment_options or {})
    )
    fields = {k: getattr(settings, k) for k in ("api_key", "max_documents", "max_body_bytes", "model_name",
                                                "score_normalization")}
    return deployment.bind(_serve_config(config), fields)


# ------------------------------------------------------------------------------------------ Ray Data


class _RankBatches:
    """A Ray Data actor: one model, adds ``scores`` and ``ranking`` to each pandas batch."""

    def __init__(self, config: dict[str, Any], query_column: str, chunks_column: str, top_n: int | None) -> None:
        self.scorer = QRScorer.from_config(config)
        _ = self.scorer.loaded
        self.query_column, self.chunks_column, self.top_n = query_column, chunks_column, top_n

    def __call__(self, batch: Any) -> Any:
        scores, rankings = [], []
        for query, chunks in zip(batch[self.query_column], batch[self.chunks_column], strict=True):
            items = [plain(c) for c in (chunks if chunks is not None else [])]
            s = self.scorer.score(query, items) if items else []
            scores.append(s)
            rankings.append(ranking_of(s, self.top_n))
        batch[SCORES_COLUMN] = scores
        batch[RANKING_COLUMN] = rankings
        return batch


def rerank_dataset(
    ds: Any,
    *,
    config: ConfigSource = None,
    query_column: str = "query",
    chunks_column: str = "chunks",
    top_n: int | None = None,
    actors: int = 1,
    num_gpus: float = 0,
    batch_size: int = 16,
    max_restarts: int = 0,
) -> Any:
    """``ds`` with a ``scores`` column (floats aligned with each row's chunks) and a ``ranking`` column
    (chunk indices, best first; the best ``top_n`` when set), scored by a pool of actors, one model each.

    Lazy, like every Ray Data transform: nothing runs until the dataset is consumed or written.

    Args:
        ds: a ``ray.data.Dataset`` with a query column (string) and a chunks column (list of strings, or of
            ``{text, title}`` objects).
        config: scorer config for every actor.
        actors: actors in the pool (``ActorPoolStrategy(size=actors)``), one CPU each unless ``num_gpus``.
        num_gpus: GPUs per actor (e.g. ``1``, or ``0.5`` to pack two on one GPU).
        batch_size: rows per batch handed to an actor.
        max_restarts: how often Ray recreates an actor that died (``-1``: always, Ray Data's own default). Off
            by default: Ray then logs an error-level line on every run, because an actor's constructor
            arguments sit in the object store, where a restart may not find them (ray-project/ray#53727).
            Pass ``-1`` on a cluster whose nodes come and go.

    Example:
        >>> ranked = rerank_dataset(ray.data.read_json("rows.jsonl"), actors=2)  # doctest: +SKIP
        >>> ranked.write_parquet("ranked/")  # doctest: +SKIP
    """
    if type(actors) is not int or actors < 1:
        raise ValueError(f"actors must be a positive integer, got {actors!r}")
    if top_n is not None and (type(top_n) is not int or top_n < 1):
        raise ValueError(f"top_n must be a positive integer or None, got {top_n!r}")
    if type(batch_size) is not int or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    missing = [c for c in (query_column, chunks_column) if c not in (ds.schema().names or [])]
    if missing:
        raise ValueError(f"the dataset has no column(s) {missing}; its columns are {ds.schema().names}; pass "
                         "query_column= and chunks_column=")
    extra: dict[str, Any] = {"num_gpus": num_gpus} if num_gpus else {"num_cpus": 1}
    with warnings.catch_warnings():
        # map_batches takes max_restarts only among the remote args it has deprecated, naming no replacement yet
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        return ds.map_batches(
            _RankBatches,
            fn_constructor_kwargs={"config": _config_dict(config), "query_column": query_column,
                                   "chunks_column": chunks_column, "top_n": top_n},
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=batch_size,
            batch_format="pandas",
            max_restarts=max_restarts,
            **extra,
        )


def rank_file_ray(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    config: ConfigSource = None,
    top_n: int | None = None,
    actors: int = 1,
    num_gpus: float = 0,
    query_column: str = "query",
    chunks_column: str = "chunks",
    show_progress: bool = True,
) -> int:
    """``qr-integrations rank-file --ray``: read with Ray Data, rank with :func:`rerank_dataset`, and write
    one output file in input order (the same rows the in-process path writes). Connect first
    (``ray.init(address=...)`` or :func:`start_local_ray`). Returns the rows written.

    Quiet: Ray Data's INFO and WARNING logs stay in its log files (``/tmp/ray/session_*/logs/ray-data``), and its progress
    bars show only with ``show_progress`` on a terminal (elsewhere Ray Data logs progress as many lines).
    """
    import json
    from pathlib import Path

    from .rankfile import file_format, write_parquet_batch

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = show_progress and sys.stderr.isatty()
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its files keep every line
    src, dst = os.fspath(in_path), Path(out_path)
    ds = ray.data.read_json(src, lines=True) if file_format(src) == "jsonl" else ray.data.read_parquet(src)
    ranked = rerank_dataset(ds, config=config, query_column=query_column, chunks_column=chunks_column,
                            top_n=top_n, actors=actors, num_gpus=num_gpus)
    rows = 0
    if file_format(dst) == "jsonl":
        with open(dst, "w", encoding="utf-8") as fh:
            for row in ranked.iter_rows():
                fh.write(json.dumps(plain(row), ensure_ascii=False) + "\n")
                rows += 1
        return rows

    writer = None
    try:
        for batch in ranked.iter_batches(batch_format="pandas", batch_size=1024):
            records = [plain(r) for r in batch.to_dict(orient="records")]
            writer = write_parquet_batch(writer, records, dst)
            rows += len(records)
    finally:
        if writer is not None:
            writer.close()
    return rows


__all__ = ["QRHeadRerankServer", "rank_file_ray", "rerank_dataset", "serve_app", "start_local_ray"]
