"""Settings and selection shared by the LlamaIndex and LangChain adapters (framework-free).

Only the adapter modules import this module; it needs pydantic, which both frameworks bring.
An adapter is a :class:`QRHeadSettings` (the model and selection fields) plus the framework's base class.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, Strict, ValidationError, field_validator, model_validator
from typing_extensions import Self

from .core.aggregate import select_within_budget
from .core.config import COMPONENT_KEYS, RANKED_INPUT, ConfigError, ScorerConfig, read_config_mapping
from .core.fusion import RRF_K, check_method, fuse
from .core.heads import HeadSet
from .core.layout import check_layout
from .core.models import DEFAULT_MODEL
from .core.scorer import QRScorer
from .core.validate import check_config

logger = logging.getLogger(__name__)

_MODEL_FIELDS = ("model", "heads", "device", "dtype")
# set on the component itself, not in scorer_options: the adapter passes its layout on every call
_OWN_SCORER_FIELDS = ("layout",)
SCORER_KEYS = tuple(f.name for f in fields(ScorerConfig))
OPTION_KEYS = tuple(k for k in SCORER_KEYS if k not in _MODEL_FIELDS + _OWN_SCORER_FIELDS)
# not settings of the component: the framework's own plumbing, never written to a config file
_NOT_CONFIG = ("callback_manager", "name")

# Strict types: "yes" is not True and "3" is not 3 (as ScorerConfig refuses them); ints are fine as floats.
StrictBool = Annotated[bool, Strict()]
StrictInt = Annotated[int, Strict()]
StrictFloat = Annotated[float, Strict()]


def read_config(source: ScorerConfig | Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """A config as a plain dict: from a :class:`ScorerConfig`, a mapping, a YAML/JSON file, or YAML/JSON text."""
    return source.to_dict() if isinstance(source, ScorerConfig) else read_config_mapping(source)


class QRHeadSettings(BaseModel):
    """The model fields and selection fields common to both adapters, and the lazily built scorer."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

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
    top_n: StrictInt | None = Field(
        default=None, ge=1, description="Keep at most this many items; None keeps all, re-ordered (see the docs for why)."
    )
    score_threshold: StrictFloat | None = Field(
        default=None, description="Drop items whose QRHead score (before fusion) is below this; None keeps all."
    )
    max_tokens: StrictInt | None = Field(default=None, ge=1, description="Token budget of the kept items; None: no budget.")
    keep_order: StrictBool = Field(
        default=False, description="False: best first. True: kept items keep their incoming order."
    )
    layout: str = Field(
        default="reversed",
        description="Prompt layout of the incoming items: 'reversed' (the first, the retriever's best, next to the "
        "query), 'input', or 'both' (two passes, averaged).",
    )
    fusion: str = Field(
        default="weighted",
        description="Fuse QRHead's scores with the incoming (retriever) ranking: 'weighted' (a mix of scores scaled "
        "to [0, 1] within the query), 'rrf' (reciprocal rank fusion) or 'none' (QRHead alone).",
    )
    fusion_weight: StrictFloat = Field(default=0.7, ge=0.0, le=1.0, description="Share of QRHead in the fusion, in [0, 1].")
    rrf_k: StrictInt = Field(default=RRF_K, ge=0, description="The reciprocal rank fusion constant.")

    _scorer: QRScorer | None = PrivateAttr(default=None)
    _scorer_given: bool = PrivateAttr(default=False)

    def __init__(self, scorer: QRScorer | None = None, **data: Any) -> None:
        data = self._sort_keywords(data, scorer is not None)
        if scorer is not None:
            if not isinstance(scorer, QRScorer):
                raise TypeError(f"scorer must be a QRScorer, got {type(scorer).__name__}")
            clash = sorted(k for k in (*_MODEL_FIELDS, "scorer_options") if data.get(k) not in (None, {}))
            if clash:
                raise TypeError(f"pass either scorer= or the fields that build one, not both (got scorer= and {clash})")
            cfg = scorer.config.to_dict()
            defaults = ScorerConfig(**RANKED_INPUT).to_dict()
            data.update({k: cfg[k] for k in _MODEL_FIELDS})
            data["scorer_options"] = {k: cfg[k] for k in OPTION_KEYS if cfg[k] != defaults[k]}
        super().__init__(**data)
        if scorer is not None:
            self._scorer, self._scorer_given = scorer, True
        else:
            # a bad model path, device, dtype or head set fails here, with the errors loading would raise
            check_config(self.scorer_config)

    @classmethod
    def _sort_keywords(cls, data: dict[str, Any], scorer_given: bool) -> dict[str, Any]:
        """Refuse unknown keywords (``topn=3`` is a TypeError, as upstream rerankers do) and move scorer options
        given at the top level (``max_context_tokens=4096``, as in a config file) into ``scorer_options``."""
        own = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
        unknown = sorted(k for k in data if k not in own and k not in OPTION_KEYS)
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, sorted(own | set(OPTION_KEYS) | {"scorer"}), n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise TypeError(
                f"{cls.__name__}() got unexpected keyword argument(s) {', '.join(hints)}; its fields: "
                f"{sorted(k for k in cls.model_fields if k not in _NOT_CONFIG)}, scorer options (at the top level or "
                f"in scorer_options): {list(OPTION_KEYS)}, and scorer=QRScorer(...)"
            )
        top = {k: data.pop(k) for k in list(data) if k in OPTION_KEYS}
        if not top:
            return data
        if scorer_given:
            raise TypeError(f"pass either scorer= or scorer options, not both (got scorer= and {sorted(top)}); "
                            "set them on the QRScorer")
        options = data.get("scorer_options") or {}
        if not isinstance(options, Mapping):
            raise TypeError(f"scorer_options must be a mapping of scorer options, got {type(options).__name__}")
        clash = sorted(k for k in top if k in options and options[k] != top[k])
        if clash:
            raise TypeError(f"{clash} given both as keywords and in scorer_options, with different values")
        data["scorer_options"] = {**options, **top}
        return data

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, value: str) -> str:
        return check_layout(value)

    @field_validator("fusion")
    @classmethod
    def _known_fusion(cls, value: str) -> str:
        return check_method(value)

    @field_validator("heads", mode="before")
    @classmethod
    def _heads_as_string(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        return HeadSet.parse(value).to_string()  # a HeadSet or (layer, head) pairs

    @model_validator(mode="after")
    def _check_scorer_config(self) -> Self:
        misplaced = sorted(set(self.scorer_options) & set(_MODEL_FIELDS + _OWN_SCORER_FIELDS))
        if misplaced:
            raise ConfigError(f"scorer_options may not hold {misplaced}; set them as fields of the component")
        unknown = sorted(set(self.scorer_options) - set(OPTION_KEYS))
        if unknown:
            raise ConfigError(f"unknown scorer option(s) {unknown}; known options: {list(OPTION_KEYS)}")
        _ = self.scorer_config  # validates every value, with ScorerConfig's messages
        return self

    @property
    def scorer_config(self) -> ScorerConfig:
        """The :class:`ScorerConfig` that these fields describe (``layout`` is the component's own field: it
        is passed on every call, so the scorer's default layout does not matter here). Items come in a
        retriever's order, so options not set take :data:`~qr_integrations.core.config.RANKED_INPUT`: no
        position corrections (the retriever's ranking, fused below, is the prior).

        Example:
            >>> from qr_integrations.langchain import QRHeadDocumentCompressor
            >>> QRHeadDocumentCompressor(heads=[(3, 1)], scorer_options={"calibrate": False}).scorer_config.heads
            '3-1'
        """
        ranked = {k: v for k, v in RANKED_INPUT.items() if k not in _OWN_SCORER_FIELDS}
        return ScorerConfig(
            model=self.model, heads=self.heads, device=self.device, dtype=self.dtype, **{**ranked, **self.scorer_options}
        )

    @property
    def model_name(self) -> str:
        """The model as configured (``"smollm2-135m-instruct"`` for the embedded default)."""
        return self.model or DEFAULT_MODEL

    @property
    def scorer(self) -> QRScorer:
        """The :class:`QRScorer` of these fields (or the one passed as ``scorer=``). Its model is loaded on
        first use and shared through the model registry with every scorer and adapter of the same model,
        device and dtype."""
        if self._scorer_given and self._scorer is not None:
            return self._scorer
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
        private = {**(state.get("__pydantic_private__") or {}), "_scorer": None, "_scorer_given": False}
        state["__pydantic_private__"] = private
        return state

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        memo = {} if memo is None else memo
        if self._scorer is not None:
            # a copy shares the model through the registry (or shares the scorer it was given), never duplicates it
            memo[id(self._scorer)] = self._scorer if self._scorer_given else None
        return super().__deepcopy__(memo)

    @classmethod
    def from_config(
        cls, config: ScorerConfig | Mapping[str, Any] | str | os.PathLike[str], **fields: Any
    ) -> Self:
        """Build from a scorer config (a :class:`ScorerConfig`, dict, YAML/JSON file or text).

        The config may also hold this component's own fields (``top_n``, ``max_tokens``, ...), so one
        file can describe the whole component; keyword arguments override the config. Keys of the other
        adapter (``keep_retrieval_score`` and ``metadata_mode``, which only the LlamaIndex postprocessor has)
        and of serialised forms (``class_name``, ``scorer_options``) are read or skipped, so one file fits both
        adapters, :class:`QRScorer` and the CLI; any other unknown key is an error.

        Example:
            >>> from qr_integrations.langchain import QRHeadDocumentCompressor
            >>> c = QRHeadDocumentCompressor.from_config("heads: all\\ntop_n: 3\\nmax_context_tokens: 2048", keep_order=True)
            >>> c.top_n, c.keep_order, c.scorer_options
            (3, True, {'max_context_tokens': 2048})
        """
        data = read_config(config)
        options = data.pop("scorer_options", None) or {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"config key 'scorer_options': expected a mapping, got {type(options).__name__}")
        data.update(options)
        own = set(cls.model_fields) - set(_MODEL_FIELDS) - {"scorer_options", *_NOT_CONFIG}
        skipped = sorted(k for k in data if k in COMPONENT_KEYS and k not in own)
        if skipped:
            logger.debug("%s.from_config skips keys of other components: %s", cls.__name__, skipped)
        data = {k: v for k, v in data.items() if k not in skipped}
        own_scorer = {k: data.pop(k) for k in _OWN_SCORER_FIELDS if k in data}  # the component's, when given
        unknown = sorted(set(data) - set(SCORER_KEYS) - own)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {unknown}; scorer keys: {list(SCORER_KEYS)}, "
                f"{cls.__name__} keys: {sorted(own)}"
            )
        scorer = ScorerConfig.from_dict({k: v for k, v in data.items() if k in SCORER_KEYS}).to_dict()
        # options the config names and that differ from what the component uses anyway (ranked-input settings)
        defaults = ScorerConfig(**RANKED_INPUT).to_dict()
        kwargs: dict[str, Any] = {k: scorer[k] for k in _MODEL_FIELDS}
        kwargs["scorer_options"] = {k: scorer[k] for k in OPTION_KEYS if k in data and scorer[k] != defaults[k]}
        kwargs.update({k: v for k, v in data.items() if k in own})
        kwargs.update(own_scorer)
        kwargs.update(fields)
        try:
            return cls(**kwargs)
        except ValidationError as exc:  # name the config key, as ScorerConfig does ("yes" is no boolean)
            problems = "; ".join(
                f"config key {'.'.join(map(str, e['loc'])) or 'value'!r}: {e['msg']}, got {e.get('input')!r}"
                if e["loc"] else e["msg"]
                for e in exc.errors()
            )
            raise ConfigError(problems) from exc

    def to_config(self) -> dict[str, Any]:
        """The component as one flat, JSON/YAML-safe config mapping (scorer keys and the component's own),
        which :meth:`from_config`, :meth:`ScorerConfig.load` and the CLI's ``--config`` read back.

        Example:
            >>> from qr_integrations.langchain import QRHeadDocumentCompressor
            >>> QRHeadDocumentCompressor(top_n=3, max_context_tokens=2048).to_config()["max_context_tokens"]
            2048
        """
        dumped = self.model_dump(mode="json", exclude={"scorer_options", *_NOT_CONFIG})
        dumped.pop("class_name", None)  # LlamaIndex adds it to every dump
        out = {k: dumped[k] for k in _MODEL_FIELDS}
        out.update(self.scorer_options)
        out.update({k: v for k, v in dumped.items() if k not in _MODEL_FIELDS})
        return out

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        """:meth:`to_config` as YAML text (written to ``path`` too, if given): a config file for
        :meth:`from_config`, :meth:`QRScorer.from_config` or ``qr-integrations --config``.

        Example:
            >>> from qr_integrations.langchain import QRHeadDocumentCompressor
            >>> c = QRHeadDocumentCompressor(top_n=3, heads="all")
            >>> QRHeadDocumentCompressor.from_config(c.to_yaml()) == c
            True
        """
        text = yaml.safe_dump(self.to_config(), sort_keys=False)
        if path is not None:
            Path(path).expanduser().write_text(text, encoding="utf-8")
        return text

    def select(
        self, query: str, texts: list[str], retriever_scores: list[float | None] | None = None
    ) -> list[tuple[int, float, float]]:
        """``(input index, score, QRHead score)`` of the items to keep, by ``top_n``, ``max_tokens`` and
        ``score_threshold``, best first (or in input order with ``keep_order``).

        ``texts`` come best first from a retriever: they are laid out in the prompt by ``layout``, and
        QRHead's ranking is fused with that incoming ranking (or ``retriever_scores``) by ``fusion``.
        ``score`` is the fused score (the QRHead score when ``fusion="none"``).

        Example:
            >>> from qr_integrations.langchain import QRHeadDocumentCompressor
            >>> compressor = QRHeadDocumentCompressor(top_n=1, fusion="none")
            >>> compressor.select("Which fruit has potassium?", ["Paris.", "Bananas have potassium."])[0][0]
            1
        """
        scorer = self.scorer
        qr = scorer.score(query, texts, layout=self.layout)
        scores = fuse(qr, retriever_scores, self.fusion, self.fusion_weight, self.rrf_k)
        # the threshold is on QRHead's own score (calibrated attention mass), which fusion leaves untouched:
        # a fused score is rank-based and says nothing absolute about relevance
        allowed = [i for i in range(len(texts)) if self.score_threshold is None or qr[i] >= self.score_threshold]
        counts = [scorer.count_tokens(texts[i]) if self.max_tokens is not None else 0 for i in allowed]
        picked = select_within_budget([scores[i] for i in allowed], counts, self.max_tokens, self.top_n)
        kept = [allowed[j] for j in picked]
        if self.keep_order:
            kept.sort()
        return [(i, scores[i], qr[i]) for i in kept]
