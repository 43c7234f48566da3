"""Settings and selection shared by the LlamaIndex and LangChain adapters (framework-free).

Only the adapter modules import this module; it needs pydantic, which both frameworks bring.
An adapter is a :class:`QRHeadSettings` (the model and selection fields) plus the framework's base class.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator
from typing_extensions import Self

from .core.config import ConfigError, ScorerConfig, read_config_mapping
from .core.heads import HeadSet
from .core.models import DEFAULT_MODEL
from .core.scorer import QRScorer

_MODEL_FIELDS = ("model", "heads", "device", "dtype")
SCORER_KEYS = tuple(f.name for f in fields(ScorerConfig))
OPTION_KEYS = tuple(k for k in SCORER_KEYS if k not in _MODEL_FIELDS)


def read_config(source: ScorerConfig | Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """A config as a plain dict: from a :class:`ScorerConfig`, a mapping, a YAML/JSON file, or YAML/JSON text."""
    return source.to_dict() if isinstance(source, ScorerConfig) else read_config_mapping(source)


class QRHeadSettings(BaseModel):
    """The model fields and selection fields common to both adapters, and the lazily built scorer."""

    model: str | None = Field(
        default=None, description="Hub id, local folder or .gguf path of the LLM; None: the embedded SmolLM2-135M-Instruct."
    )
    heads: str | None = Field(
        default=None, description="'all', 'L-H,L-H', a shipped head-set name or a YAML path; None: the model's default."
    )
    device: str = Field(default="auto", description="'auto' (cuda, mps, cpu), 'cpu', 'cuda', 'cuda:1', ...")
    dtype: str = Field(default="auto", description="'auto', 'float32', 'bfloat16' or 'float16'.")
    scorer_options: dict[str, Any] = Field(
        default_factory=dict, description=f"Other ScorerConfig fields for the scorer: {', '.join(OPTION_KEYS)}."
    )
    top_n: int | None = Field(default=None, ge=1, description="Keep at most this many items; None keeps all.")
    score_threshold: float | None = Field(default=None, description="Drop items scoring below this; None keeps all.")
    max_tokens: int | None = Field(default=None, ge=1, description="Token budget of the kept items; None: no budget.")
    keep_order: bool = Field(default=False, description="False: best first. True: kept items keep their incoming order.")

    _scorer: QRScorer | None = PrivateAttr(default=None)

    @field_validator("heads", mode="before")
    @classmethod
    def _heads_as_string(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        return HeadSet.parse(value).to_string()  # a HeadSet or (layer, head) pairs

    @model_validator(mode="after")
    def _check_scorer_config(self) -> Self:
        misplaced = sorted(set(self.scorer_options) & set(_MODEL_FIELDS))
        if misplaced:
            raise ConfigError(f"scorer_options may not hold {misplaced}; set them as fields of the component")
        unknown = sorted(set(self.scorer_options) - set(OPTION_KEYS))
        if unknown:
            raise ConfigError(f"unknown scorer option(s) {unknown}; known options: {list(OPTION_KEYS)}")
        _ = self.scorer_config  # validates every value, with ScorerConfig's messages
        return self

    @property
    def scorer_config(self) -> ScorerConfig:
        """The :class:`ScorerConfig` that these fields describe.

        Example:
            >>> from qr_integrations.langchain import QRHeadDocumentCompressor
            >>> QRHeadDocumentCompressor(heads=[(3, 1)], scorer_options={"calibrate": False}).scorer_config.heads
            '3-1'
        """
        return ScorerConfig(
            model=self.model, heads=self.heads, device=self.device, dtype=self.dtype, **self.scorer_options
        )

    @property
    def model_name(self) -> str:
        """The model as configured (``"smollm2-135m-instruct"`` for the embedded default)."""
        return self.model or DEFAULT_MODEL

    @property
    def scorer(self) -> QRScorer:
        """The :class:`QRScorer` of these fields. Its model is loaded on first use and shared through the
        model registry with every scorer and adapter of the same model, device and dtype."""
        config = self.scorer_config
        current = self._scorer
        if current is None or current.config != config:
            current = QRScorer(config=config)
            self._scorer = current
        return current

    def __getstate__(self) -> dict[Any, Any]:
        # Never pickle the scorer (it holds the model): the restored component shares or loads it on first use.
        scorer, self._scorer = self._scorer, None
        try:
            state = super().__getstate__()
        finally:
            self._scorer = scorer
        state["__pydantic_private__"] = {**(state.get("__pydantic_private__") or {}), "_scorer": None}
        return state

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        memo = {} if memo is None else memo
        if self._scorer is not None:
            memo[id(self._scorer)] = None  # a copy shares the model through the registry, never duplicates it
        return super().__deepcopy__(memo)

    @classmethod
    def from_config(
        cls, config: ScorerConfig | Mapping[str, Any] | str | os.PathLike[str], **fields: Any
    ) -> Self:
        """Build from a scorer config (a :class:`ScorerConfig`, dict, YAML/JSON file or text).

        The config may also hold this component's own fields (``top_n``, ``max_tokens``, ...), so one
        file can describe the whole component; keyword arguments override the config.

        Example:
            >>> from qr_integrations.langchain import QRHeadDocumentCompressor
            >>> c = QRHeadDocumentCompressor.from_config("heads: all\\ntop_n: 3\\nmax_context_tokens: 2048", keep_order=True)
            >>> c.top_n, c.keep_order, c.scorer_options
            (3, True, {'max_context_tokens': 2048})
        """
        data = read_config(config)
        data.pop("class_name", None)
        data.update(data.pop("scorer_options", None) or {})
        own = set(cls.model_fields) - set(_MODEL_FIELDS) - {"scorer_options", "callback_manager"}
        unknown = sorted(set(data) - set(SCORER_KEYS) - own)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {unknown}; scorer keys: {list(SCORER_KEYS)}, "
                f"{cls.__name__} keys: {sorted(own)}"
            )
        scorer = ScorerConfig.from_dict({k: v for k, v in data.items() if k in SCORER_KEYS}).to_dict()
        defaults = ScorerConfig().to_dict()
        kwargs: dict[str, Any] = {k: scorer[k] for k in _MODEL_FIELDS}
        kwargs["scorer_options"] = {k: scorer[k] for k in OPTION_KEYS if scorer[k] != defaults[k]}
        kwargs.update({k: v for k, v in data.items() if k in own})
        kwargs.update(fields)
        return cls(**kwargs)

    def select(self, query: str, texts: list[str]) -> list[tuple[int, float]]:
        """``(input index, score)`` of the items to keep, by ``top_n``, ``max_tokens`` and ``score_threshold``,
        best first (or in input order with ``keep_order``).

        Example:
            >>> from qr_integrations.langchain import QRHeadDocumentCompressor
            >>> compressor = QRHeadDocumentCompressor(top_n=1)
            >>> compressor.select("Which fruit has potassium?", ["Paris.", "Bananas have potassium."])[0][0]
            1
        """
        kept = self.scorer.trim(query, texts, max_tokens=self.max_tokens, top_n=self.top_n, keep_order=self.keep_order)
        # Items below the threshold come after every item above it in trim's best-first pass, so dropping
        # them afterwards selects exactly what dropping them first would.
        threshold = self.score_threshold
        return [(i, float(s)) for i, s in zip(kept.indices, kept.scores, strict=True) if threshold is None or s >= threshold]
