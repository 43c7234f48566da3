"""Head sets: which (layer, head) attention heads are summed into a relevance score.

A :class:`HeadSet` is either *all* heads of a model (the ICR-style baseline) or an explicit list of
``(layer, head)`` pairs, 0-based.  Head sets are written as YAML files; the package ships the sets
published with QRHead (Zhang et al., 2025, arXiv 2506.09944) and the sets we detected for the embedded
models, and you can load your own by path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

import yaml

Head = tuple[int, int]
HeadSpec = Union["HeadSet", str, Sequence[Sequence[int]], None]

_PAIR = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
# a pair written another way: "L3H1", "3:1", "layer3_head1", "(3, 1)"
_LOOSE_PAIR = re.compile(r"^\(?\s*(?:l(?:ayer)?\s*)?(\d+)\s*(?:h(?:ead)?|[:_/.,-]|\s)\s*(?:h(?:ead)?\s*)?(\d+)\s*\)?$", re.I)
_BUILTIN_PACKAGE = "qr_integrations.core.headsets"


class HeadSetError(ValueError):
    """A head set that cannot be parsed, found, or used with the model at hand."""


def normalize_model_name(name: str) -> str:
    """Reduce a model id or path to the key used for shipped head sets.

    Example:
        >>> normalize_model_name("meta-llama/Llama-3.1-8B-Instruct")
        'llama-3.1-8b-instruct'
    """
    base = str(name).rstrip("/").split("/")[-1]
    base = re.sub(r"\.gguf$", "", base, flags=re.IGNORECASE)
    return base.lower()


@dataclass(frozen=True)
class HeadSet:
    """A set of attention heads, or all heads of a model.

    Args:
        heads: ``(layer, head)`` pairs, 0-based, in order of importance. ``None`` means every head.
        name: a short name, e.g. ``"llama-3.1-8b-instruct-nq"``.
        model: the model the heads were found for (informational; checked against the shape).
        num_layers: layers of that model, if known; used to refuse a set made for another shape.
        num_heads: query heads per layer of that model, if known.
        scores: optional per-head quality scores from detection, aligned with ``heads``.
        source: free text saying where the heads come from.

    Example:
        >>> hs = HeadSet.parse("13-18,13-21,8-11")
        >>> hs.heads
        ((13, 18), (13, 21), (8, 11))
        >>> hs.max_layer
        13
        >>> HeadSet.parse("all").is_all
        True
    """

    heads: tuple[Head, ...] | None = None
    name: str | None = None
    model: str | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    scores: tuple[float, ...] | None = None
    source: str | None = None
    metric: str | None = field(default=None)

    def __post_init__(self) -> None:
        if self.heads is not None:
            if len(self.heads) == 0:
                raise HeadSetError("a head set needs at least one (layer, head) pair; use 'all' for every head")
            clean: list[Head] = []
            for i, pair in enumerate(self.heads):
                if len(pair) != 2:
                    raise HeadSetError(f"head #{i} is {pair!r}; expected a (layer, head) pair")
                layer, head = int(pair[0]), int(pair[1])
                if layer < 0 or head < 0:
                    raise HeadSetError(f"head #{i} is {pair!r}; layers and heads are 0-based and non-negative")
                clean.append((layer, head))
            if len(set(clean)) != len(clean):
                raise HeadSetError(f"head set {self.name or ''} lists a head twice: {clean}")
            object.__setattr__(self, "heads", tuple(clean))
            if self.scores is not None:
                if len(self.scores) != len(clean):
                    raise HeadSetError("scores must be aligned with heads (same length)")
                object.__setattr__(self, "scores", tuple(float(s) for s in self.scores))

    # ------------------------------------------------------------------ construction
    @classmethod
    def all(cls) -> HeadSet:
        """Every head of the model (the ICR-style all-heads baseline)."""
        return cls(heads=None, name="all")

    @classmethod
    def parse(cls, spec: HeadSpec) -> HeadSet:
        """Build a head set from any accepted form.

        Accepted: a :class:`HeadSet`; ``None`` or ``"all"``; a ``"L-H,L-H"`` string; a list of
        ``(layer, head)`` pairs; the name of a shipped set (see :func:`available_head_sets`); or the
        path of a head-set YAML file.

        Example:
            >>> HeadSet.parse([(8, 21), (8, 14)]).heads
            ((8, 21), (8, 14))
        """
        if spec is None:
            return cls.all()
        if isinstance(spec, HeadSet):
            return spec
        if isinstance(spec, str):
            text = spec.strip()
            if text.lower() in {"all", "full", "full_heads", "all_heads"}:
                return cls.all()
            if text and all(_PAIR.match(p) for p in text.split(",")):
                pairs = [tuple(int(x) for x in p.split("-")) for p in text.split(",")]
                return cls(heads=tuple((a, b) for a, b in pairs))
            path = Path(text).expanduser()
            if path.suffix.lower() in {".yaml", ".yml"} or path.exists():
                return cls.from_yaml(path)
            try:
                return cls.named(text)
            except HeadSetError:
                raise HeadSetError(_not_a_head_spec(text)) from None
        if isinstance(spec, Iterable):
            try:
                pairs = [tuple(int(x) for x in p) for p in spec]
            except (TypeError, ValueError) as exc:
                raise HeadSetError(f"cannot read head list {spec!r}: expected (layer, head) pairs") from exc
            return cls(heads=tuple((p[0], p[1]) if len(p) == 2 else p for p in pairs))  # type: ignore[misc]
        raise HeadSetError(
            f"cannot make a head set from {type(spec).__name__}; pass 'all', 'L-H,L-H', a list of "
            "(layer, head) pairs, a shipped set name or a YAML path"
        )

    @classmethod
    def named(cls, name: str) -> HeadSet:
        """Load a head set shipped with the package by its name.

        Example:
            >>> HeadSet.named("llama-3.1-8b-instruct-nq").max_layer
            20
        """
        key = name.strip().lower()
        try:
            ref = resources.files(_BUILTIN_PACKAGE).joinpath(f"{key}.yaml")
            if ref.is_file():
                return cls.from_yaml_text(ref.read_text(encoding="utf-8"), default_name=key)
        except ModuleNotFoundError:  # pragma: no cover - broken install
            pass
        raise HeadSetError(
            f"no shipped head set named {name!r}; available: {', '.join(available_head_sets())}. "
            "Pass 'all', an 'L-H,L-H' string or the path of a head-set YAML file instead."
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> HeadSet:
        """Read a head set from a YAML file written by :meth:`to_yaml`."""
        p = Path(path).expanduser()
        if not p.is_file():
            raise HeadSetError(f"head-set file {str(p)!r} does not exist")
        return cls.from_yaml_text(p.read_text(encoding="utf-8"), default_name=p.stem)

    @classmethod
    def from_yaml_text(cls, text: str, default_name: str | None = None) -> HeadSet:
        """Parse the YAML text of a head set."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise HeadSetError(f"head-set YAML does not parse: {exc}") from exc
        return cls.from_dict(data, default_name=default_name)

    @classmethod
    def from_dict(cls, data: Any, default_name: str | None = None) -> HeadSet:
        """Build a head set from the mapping form used in YAML files."""
        if not isinstance(data, dict) or "heads" not in data:
            raise HeadSetError("a head-set mapping needs a 'heads' key (a list of [layer, head] or 'all')")
        heads = data["heads"]
        base = cls.parse(heads)
        scores = data.get("scores")
        return cls(
            heads=base.heads,
            name=data.get("name", default_name),
            model=data.get("model"),
            num_layers=data.get("num_layers"),
            num_heads=data.get("num_heads"),
            scores=tuple(scores) if scores is not None and base.heads is not None else None,
            source=data.get("source"),
            metric=data.get("metric"),
        )

    # ------------------------------------------------------------------ use
    @property
    def is_all(self) -> bool:
        """True when the set means every head of the model."""
        return self.heads is None

    @property
    def max_layer(self) -> int | None:
        """The deepest layer holding a selected head (``None`` for all heads)."""
        return None if self.heads is None else max(layer for layer, _ in self.heads)

    def resolve(self, num_layers: int, num_heads: int) -> tuple[Head, ...]:
        """The explicit heads for a model of this shape, checked against it.

        Raises:
            HeadSetError: a head lies outside the model, or the set was made for another shape.
        """
        if self.heads is None:
            return tuple((layer, head) for layer in range(num_layers) for head in range(num_heads))
        if (self.num_layers is not None and self.num_layers != num_layers) or (
            self.num_heads is not None and self.num_heads != num_heads
        ):
            raise HeadSetError(
                f"head set {self.name or ''!r} was made for a model with {self.num_layers} layers x "
                f"{self.num_heads} heads ({self.model or 'unknown model'}), but this model has {num_layers} x "
                f"{num_heads}; detect heads for this model (qr-integrations detect) or use 'all'"
            )
        bad = [(la, h) for la, h in self.heads if la >= num_layers or h >= num_heads]
        if bad:
            raise HeadSetError(
                f"heads {bad} are outside this model ({num_layers} layers x {num_heads} heads, 0-based); "
                "was the head set made for another model?"
            )
        return self.heads

    def to_string(self) -> str:
        """The compact ``"L-H,L-H"`` form (``"all"`` for all heads)."""
        if self.heads is None:
            return "all"
        return ",".join(f"{la}-{h}" for la, h in self.heads)

    def to_dict(self) -> dict[str, Any]:
        """The mapping written to YAML."""
        out: dict[str, Any] = {}
        for key in ("name", "model", "num_layers", "num_heads", "metric", "source"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["heads"] = "all" if self.heads is None else [[la, h] for la, h in self.heads]
        if self.scores is not None:
            out["scores"] = [float(s) if math.isfinite(s) else None for s in self.scores]
        return out

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Write the head set as YAML (to ``path`` if given) and return the text.

        Example:
            >>> print(HeadSet.parse("1-2").to_yaml().strip())
            heads:
            - - 1
              - 2
        """
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).expanduser().write_text(text, encoding="utf-8")
        return text

    def size(self, num_layers: int, num_heads: int) -> int:
        """Number of heads for a model of this shape."""
        return len(self.resolve(num_layers, num_heads))


def _not_a_head_spec(text: str) -> str:
    """The error for a head string that is neither a pair list, a file nor a shipped name."""
    parts = [p for p in re.split(r"\s*[,;]\s*|\s+(?=[Ll(]?\d)", text.strip()) if p]
    loose = [_LOOSE_PAIR.match(p) for p in parts]
    hint = ""
    if parts and all(loose):
        hint = " (did you mean " + repr(",".join(f"{m.group(1)}-{m.group(2)}" for m in loose if m)) + "?)"
    return (
        f"heads {text!r} is not a head list{hint}: write 0-based layer-head pairs in the L-H syntax, comma "
        "separated, e.g. '3-1,12-4'; or pass 'all', the path of a head-set YAML file, or a shipped head-set "
        f"name ({', '.join(available_head_sets())})"
    )


def available_head_sets() -> list[str]:
    """Names of the head sets shipped with the package.

    Example:
        >>> "llama-3.1-8b-instruct-nq" in available_head_sets()
        True
    """
    root = resources.files(_BUILTIN_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def default_head_set_for(model_name: str) -> HeadSet:
    """The head set used when none is given: the model's shipped default, else all heads.

    A shipped set is the default for a model when its YAML has ``default: true`` and its ``model``
    key matches :func:`normalize_model_name` of the model.
    """
    key = normalize_model_name(model_name)
    root = resources.files(_BUILTIN_PACKAGE)
    for ref in sorted(root.iterdir(), key=lambda r: r.name):
        if not ref.name.endswith(".yaml"):
            continue
        data = yaml.safe_load(ref.read_text(encoding="utf-8"))
        if data.get("default") and normalize_model_name(str(data.get("model", ""))) == key:
            return HeadSet.from_dict(data, default_name=ref.name[:-5])
    return HeadSet.all()
