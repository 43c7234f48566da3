"""Head detection: find a model's query-focused retrieval heads from a handful of labelled examples.

The method (QRHead, arXiv 2506.09944): run the all-heads scorer once per example, keep every head's own
chunk scores, rank each head by its own retrieval quality over the examples, keep the best ``top_k``.

Two steps, kept apart so that the ranking can be checked on constructed scores:

1. :func:`collect_head_scores`: one forward pass per example (:meth:`QRScorer.head_scores`);
2. :func:`rank_heads`: a pure function from per-head score matrices and relevance labels to a
   :class:`HeadRanking` (mean metric per head), whose :meth:`HeadRanking.head_set` is the detected set.

:func:`detect_heads` does both. Metrics:

* ``"ndcg@10"`` (any ``"ndcg@K"``): nDCG of the head's own chunk ranking (calibrated, outlier-filtered
  scores), linear gain as in trec_eval, graded or binary relevance; the ideal ranking is that of the
  example's own chunks.
* ``"qrscore"``: the QRScore of the paper: the calibrated attention mass (no outlier filter) that the head
  puts on the gold chunks, summed over the gold chunks, averaged over examples.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .heads import Head, HeadSet
from .prompt import Chunk, normalize_chunk

if TYPE_CHECKING:  # pragma: no cover
    from .scorer import HeadScores, QRScorer

DEFAULT_METRIC = "ndcg@10"
_NDCG = re.compile(r"^ndcg@(\d+)$")


class DetectionError(ValueError):
    """Detection input that cannot be used (bad example, metric, or ``top_k``)."""


# ---------------------------------------------------------------------------------------------- metrics
def ndcg_at_k(
    scores: Sequence[float] | np.ndarray,
    relevance: Sequence[float] | np.ndarray,
    k: int = 10,
    ideal: Sequence[float] | None = None,
) -> float:
    """nDCG@k of the ranking that ``scores`` induce, against graded or binary ``relevance``.

    Linear gain (``rel / log2(rank + 1)``, as trec_eval); ties in ``scores`` keep input order; the
    ideal DCG is that of ``relevance`` sorted, or of ``ideal`` (the grades of every relevant document of
    the query, also those missing from the candidates, as a re-ranking evaluation needs). Returns 0.0
    when nothing is relevant.

    Example:
        >>> ndcg_at_k([0.9, 0.1, 0.5], [0, 1, 0])  # gold ranked 3rd of 3
        0.5
        >>> ndcg_at_k([0.2, 0.9, 0.5], [0, 1, 0])
        1.0
    """
    s = np.asarray(scores, dtype=np.float64)
    r = np.asarray(relevance, dtype=np.float64)
    if s.shape != r.shape or s.ndim != 1:
        raise DetectionError(f"scores and relevance must be 1-d and aligned, got shapes {s.shape} and {r.shape}")
    if k < 1:
        raise DetectionError(f"k must be positive, got {k}")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    best = np.sort(np.asarray(ideal if ideal is not None else r, dtype=np.float64))[::-1][:k]
    idcg = float((best * discounts[: len(best)]).sum())
    if idcg <= 0:
        return 0.0
    order = np.argsort(-s, kind="stable")[:k]
    dcg = float((r[order] * discounts[: len(order)]).sum())
    return dcg / idcg


def qrscore(mass: Sequence[float] | np.ndarray, relevance: Sequence[float] | np.ndarray) -> float:
    """QRScore of one head on one example: its calibrated attention mass summed over the gold chunks.

    Example:
        >>> qrscore([0.02, 0.30, -0.01, 0.05], [0, 1, 0, 2])
        0.35
    """
    m = np.asarray(mass, dtype=np.float64)
    r = np.asarray(relevance, dtype=np.float64)
    if m.shape != r.shape or m.ndim != 1:
        raise DetectionError(f"mass and relevance must be 1-d and aligned, got shapes {m.shape} and {r.shape}")
    return round(float(m[r > 0].sum()), 12)


def check_metric(metric: str) -> str:
    """Normalize a metric name (``"ndcg@10"``, ``"ndcg@5"``, ``"qrscore"``) or raise a clear error.

    Example:
        >>> check_metric("nDCG@10"), check_metric("QRScore")
        ('ndcg@10', 'qrscore')
    """
    key = str(metric).strip().lower().replace("_", "")
    if key == "qrscore" or (_NDCG.match(key) and int(key.split("@")[1]) > 0):
        return key
    raise DetectionError(f"unknown metric {metric!r}; use 'ndcg@10' (any 'ndcg@K') or 'qrscore'")


# ---------------------------------------------------------------------------------------------- examples
@dataclass(frozen=True)
class DetectionExample:
    """A labelled example: a query, its candidate chunks, and the relevance of each chunk (0 = not relevant).

    Example:
        >>> ex = DetectionExample.from_obj(("Who wrote Hamlet?", ["Paris is in France.", "Shakespeare wrote Hamlet."], [1]))
        >>> ex.relevance
        (0.0, 1.0)
    """

    query: str
    chunks: tuple[Chunk, ...]
    relevance: tuple[float, ...]
    id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.query, str) or not self.query.strip():
            raise DetectionError(f"example {self.id or ''}: the query must be a non-empty string")
        if not self.chunks:
            raise DetectionError(f"example {self.id or ''}: it has no chunks")
        if len(self.relevance) != len(self.chunks):
            raise DetectionError(f"example {self.id or ''}: relevance must have one value per chunk")
        if not any(r > 0 for r in self.relevance):
            raise DetectionError(f"example {self.id or ''}: it has no gold chunk; detection needs at least one")

    @classmethod
    def from_obj(cls, obj: Any, index: int = 0) -> DetectionExample:
        """Build an example from the accepted forms.

        Accepted: a :class:`DetectionExample`; a tuple ``(query, chunks, gold[, grades])``; a mapping with
        ``"query"``, ``"chunks"``, ``"gold"`` (and optional ``"id"``). ``gold`` lists gold chunks by 0-based
        position, or by the ``"id"`` of mapping chunks; it may also be a mapping ``{gold: grade}`` for graded
        relevance, or come with ``grades`` aligned with it.

        Example:
            >>> chunks = [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "c", "text": "z"}]
            >>> DetectionExample.from_obj({"query": "q", "chunks": chunks, "gold": {"c": 2, "a": 1}}).relevance
            (1.0, 0.0, 2.0)
        """
        if isinstance(obj, DetectionExample):
            return obj
        grades: Any = None
        ex_id: Any = None
        if isinstance(obj, Mapping):
            missing = [k for k in ("query", "chunks", "gold") if k not in obj]
            if missing:
                raise DetectionError(f"example {index}: missing key(s) {missing}; needs 'query', 'chunks', 'gold'")
            query, chunks, gold = obj["query"], obj["chunks"], obj["gold"]
            grades = obj.get("grades")
            ex_id = obj.get("id")
        elif isinstance(obj, (tuple, list)) and len(obj) in (3, 4):
            query, chunks, gold = obj[0], obj[1], obj[2]
            grades = obj[3] if len(obj) == 4 else None
        else:
            raise DetectionError(
                f"example {index}: expected (query, chunks, gold[, grades]) or a mapping with query/chunks/gold"
            )
        label = str(ex_id) if ex_id is not None else str(index)
        if isinstance(chunks, (str, bytes)) or not isinstance(chunks, Sequence):
            raise DetectionError(f"example {label}: chunks must be a list")
        chunk_list = list(chunks)
        try:
            for i, c in enumerate(chunk_list):
                normalize_chunk(c, i)
        except TypeError as exc:
            raise DetectionError(f"example {label}: {exc}") from exc
        ids = {str(c["id"]): i for i, c in enumerate(chunk_list) if isinstance(c, Mapping) and "id" in c}
        if isinstance(gold, Mapping):
            pairs = list(gold.items())
        else:
            if isinstance(gold, (str, int)):
                gold = [gold]
            gold_list = list(gold)
            if grades is None:
                grade_list: list[Any] = [1] * len(gold_list)
            else:
                grade_list = list(grades)
                if len(grade_list) != len(gold_list):
                    raise DetectionError(f"example {label}: grades must be aligned with gold ({len(gold_list)} ids)")
            pairs = list(zip(gold_list, grade_list, strict=True))
        relevance = [0.0] * len(chunk_list)
        for g, grade in pairs:
            pos = _position(g, ids, len(chunk_list), label)
            try:
                value = float(grade)
            except (TypeError, ValueError) as exc:
                raise DetectionError(f"example {label}: grade {grade!r} of gold {g!r} is not a number") from exc
            if not math.isfinite(value) or value < 0:
                raise DetectionError(f"example {label}: grade {grade!r} of gold {g!r} must be a finite number >= 0")
            relevance[pos] = value
        return cls(query=query, chunks=tuple(chunk_list), relevance=tuple(relevance), id=label)


def _position(gold: Any, ids: Mapping[str, int], n: int, label: str) -> int:
    if isinstance(gold, str) and gold in ids:
        return ids[gold]
    if isinstance(gold, bool):
        raise DetectionError(f"example {label}: gold {gold!r} is not a chunk position or id")
    if isinstance(gold, int) or (isinstance(gold, str) and gold.strip().isdigit() and not ids):
        pos = int(gold)
        if not 0 <= pos < n:
            raise DetectionError(f"example {label}: gold position {pos} is outside its {n} chunks (0-based)")
        return pos
    raise DetectionError(
        f"example {label}: gold {gold!r} is neither a 0-based chunk position nor the 'id' of one of its chunks"
    )


def read_examples(path: str | os.PathLike[str]) -> list[DetectionExample]:
    """Read detection examples from a JSONL file (one example object per line; see docs/heads.md).

    Example:
        >>> read_examples("examples.jsonl")  # doctest: +SKIP
        [DetectionExample(query='...', ...), ...]
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DetectionError(f"examples file {str(p)!r} does not exist")
    out: list[DetectionExample] = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DetectionError(f"{p}:{n}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise DetectionError(f"{p}:{n}: expected a JSON object with query, chunks, gold")
        obj.setdefault("id", f"line {n}")
        try:
            out.append(DetectionExample.from_obj(obj, n))
        except DetectionError as exc:
            raise DetectionError(f"{p}:{n}: {exc}") from exc
    if not out:
        raise DetectionError(f"{p} holds no examples")
    return out


def _examples(examples: Iterable[Any] | str | os.PathLike[str]) -> list[DetectionExample]:
    if isinstance(examples, (str, os.PathLike)):
        return read_examples(examples)
    out = [DetectionExample.from_obj(e, i) for i, e in enumerate(examples)]
    if not out:
        raise DetectionError("no examples; detection needs at least one labelled example")
    return out


# ---------------------------------------------------------------------------------------------- ranking
@dataclass(frozen=True)
class HeadRanking:
    """Every head's retrieval quality on the detection examples.

    Attributes:
        heads: the ``(layer, head)`` of each column.
        per_example: ``(num_examples, len(heads))`` metric of each head on each example.
        metric: the metric name.
        num_layers: layers of the model (for the heatmap and the head set's shape check).
        num_heads: heads per layer.
        model: the model's name, if known.
    """

    heads: tuple[Head, ...]
    per_example: np.ndarray
    metric: str
    num_layers: int
    num_heads: int
    model: str | None = None

    @property
    def values(self) -> np.ndarray:
        """Mean metric per head over the examples, aligned with :attr:`heads`."""
        return np.asarray(self.per_example.mean(axis=0), dtype=np.float64)

    @property
    def num_examples(self) -> int:
        """How many examples the ranking averages over."""
        return int(self.per_example.shape[0])

    @property
    def order(self) -> list[int]:
        """Column indices best first (ties keep (layer, head) order)."""
        return [int(i) for i in np.argsort(-self.values, kind="stable")]

    def top(self, k: int) -> list[tuple[Head, float]]:
        """The best ``k`` heads with their scores.

        Example:
            >>> r = rank_heads([np.array([[0.1, 0.9], [0.9, 0.1]])], [[0, 1]], heads=[(0, 0), (0, 1)])
            >>> r.top(1)
            [((0, 0), 1.0)]
        """
        return [(self.heads[i], float(self.values[i])) for i in self.order[:k]]

    def head_set(self, top_k: int = 16, name: str | None = None, source: str | None = None,
                 max_layers: int | None = None) -> HeadSet:
        """The best ``top_k`` heads as a :class:`HeadSet` (with their scores and the model's shape).

        ``max_layers`` keeps only heads in the first ``max_layers`` layers (a depth budget: the forward
        pass stops after the deepest selected layer, so a shallower set scores faster).

        Example:
            >>> r = rank_heads([np.array([[0.9, 0.1], [0.1, 0.9]])], [[0, 1]], heads=[(0, 0), (1, 1)])
            >>> r.head_set(1).to_string(), r.head_set(1, max_layers=1).to_string()
            ('1-1', '0-0')
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise DetectionError(f"top_k must be a positive integer, got {top_k!r}")
        check_max_layers(max_layers)
        allowed = [i for i in self.order if max_layers is None or self.heads[i][0] < max_layers]
        if top_k > len(allowed):
            within = "" if max_layers is None else f" in its first {max_layers} layers"
            raise DetectionError(f"top_k={top_k} but the ranking holds only {len(allowed)} heads{within}")
        best = [(self.heads[i], float(self.values[i])) for i in allowed[:top_k]]
        if max_layers is not None and source is None:
            source = (f"qr-integrations detect_heads: top {top_k} by {self.metric} in layers 0-{max_layers - 1} "
                      f"on {self.num_examples} examples")
        return HeadSet(
            heads=tuple(h for h, _ in best),
            name=name,
            model=self.model,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            scores=tuple(s for _, s in best),
            source=source or f"qr-integrations detect_heads: top {top_k} by {self.metric} on {self.num_examples} examples",
            metric=self.metric,
        )

    def tie_warning(self, top_k: int = 16, max_layers: int | None = None) -> str | None:
        """A warning when the examples cannot separate the heads at the cut: heads left out of the best
        ``top_k`` score the same as the last one kept, so which of them are kept is decided by (layer, head)
        order, not by the examples. ``None`` when the cut falls between different scores.

        Example:
            >>> scores = np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])  # 4 heads x 2 chunks, gold 1
            >>> r = rank_heads([scores], [[0, 1]], heads=[(0, 0), (0, 1), (1, 0), (1, 1)])
            >>> r.tie_warning(2)
            '3 heads tie at 1.000 across the cut at the 2nd best, on 1 example: ...'
            >>> r.tie_warning(3) is None
            True
        """
        allowed = [i for i in self.order if max_layers is None or self.heads[i][0] < max_layers]
        if not 0 < top_k < len(allowed):
            return None
        values = self.values
        cut = float(values[allowed[top_k - 1]])
        tied = [i for i in allowed if math.isclose(float(values[i]), cut, rel_tol=0.0, abs_tol=1e-9)]
        if all(i in allowed[:top_k] for i in tied):
            return None
        inside = sum(1 for i in tied if i in allowed[:top_k])
        examples = f"{self.num_examples} example{'s' if self.num_examples != 1 else ''}"
        return (f"{len(tied)} heads tie at {cut:.3f} across the cut at the {_ordinal(top_k)} best, on {examples}: "
                f"the examples cannot separate them, so {inside} of them were kept by (layer, head) order, not "
                "by merit; add examples (more, and harder: more chunks, closer distractors) until they do")

    def grid(self) -> np.ndarray:
        """Mean metric as a ``(num_layers, num_heads)`` array (NaN for heads that were not scored).

        Example:
            >>> rank_heads([np.array([[0.1, 0.9], [0.9, 0.1]])], [[0, 1]], heads=[(0, 0), (0, 1)]).grid().tolist()
            [[1.0, 0.6309297535714575]]
        """
        out = np.full((self.num_layers, self.num_heads), np.nan)
        for (layer, head), v in zip(self.heads, self.values, strict=True):
            out[layer, head] = v
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: metric, shape, and every head's mean score, best first."""
        return {
            "model": self.model,
            "metric": self.metric,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_examples": self.num_examples,
            "ranking": [{"layer": h[0], "head": h[1], "score": s} for h, s in self.top(len(self.heads))],
        }

    def plot(self, path: str | os.PathLike[str] | None = None, top_k: int = 16, title: str | None = None) -> Any:
        """Heatmap (layers x heads) of the head scores with the best ``top_k`` marked; saved as PNG if ``path``.

        Needs matplotlib (``pip install 'qr-integrations[plots]'``). Returns the matplotlib figure.

        Example:
            >>> ranking.plot("heads.png")  # doctest: +SKIP
        """
        return plot_head_ranking(self, path, top_k=top_k, title=title)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class HeadTieWarning(UserWarning):
    """The detection examples score several heads alike across the top-k cut (see :meth:`HeadRanking.tie_warning`)."""


def rank_heads(
    per_head_scores: Sequence[np.ndarray | Any],
    relevances: Sequence[Sequence[float]],
    *,
    heads: Sequence[Head],
    metric: str = DEFAULT_METRIC,
    num_layers: int | None = None,
    num_heads: int | None = None,
    model: str | None = None,
) -> HeadRanking:
    """Rank heads by their own retrieval quality: a pure function over per-head score matrices.

    Args:
        per_head_scores: one ``(len(heads), num_chunks)`` matrix per example: the chunk scores of each head
            (for ``"ndcg@K"``: :attr:`HeadScores.scores`; for ``"qrscore"``: :attr:`HeadScores.mass`).
        relevances: per example, the relevance of each chunk (0 = not relevant; graded values allowed).
        heads: the ``(layer, head)`` of each row.
        metric: ``"ndcg@10"`` (any ``"ndcg@K"``) or ``"qrscore"``.
        num_layers: the model's layers (default: deepest head + 1).
        num_heads: the model's heads per layer (default: largest head index + 1).
        model: the model's name, stored in the ranking and the head set.

    Returns:
        A :class:`HeadRanking`; ``.head_set(16)`` is the detected head set.

    Example:
        >>> import numpy as np
        >>> scores = [np.array([[0.2, 0.1, 0.7], [0.9, 0.0, 0.1]])]  # 2 heads x 3 chunks, 1 example
        >>> r = rank_heads(scores, [[0, 0, 1]], heads=[(0, 0), (0, 1)])
        >>> [(head, round(value, 3)) for head, value in r.top(2)]  # head (0, 1) puts the relevant chunk 2nd
        [((0, 0), 1.0), ((0, 1), 0.631)]
    """
    key = check_metric(metric)
    head_list = [(int(a), int(b)) for a, b in heads]
    if not head_list:
        raise DetectionError("no heads to rank")
    if len(per_head_scores) != len(relevances):
        raise DetectionError(f"{len(per_head_scores)} score matrices but {len(relevances)} relevance lists")
    if not per_head_scores:
        raise DetectionError("no examples; detection needs at least one labelled example")
    k = int(key.split("@")[1]) if key.startswith("ndcg@") else 0
    rows: list[np.ndarray] = []
    for i, (mat, rel) in enumerate(zip(per_head_scores, relevances, strict=True)):
        m = np.asarray(mat.numpy() if hasattr(mat, "numpy") else mat, dtype=np.float64)
        r = np.asarray(rel, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != len(head_list) or m.shape[1] != r.shape[0]:
            raise DetectionError(
                f"example {i}: scores have shape {m.shape}, expected ({len(head_list)} heads, {r.shape[0]} chunks)"
            )
        if not (r > 0).any():
            raise DetectionError(f"example {i}: it has no gold chunk; detection needs at least one")
        if k:
            rows.append(np.array([ndcg_at_k(m[h], r, k) for h in range(m.shape[0])]))
        else:
            rows.append(np.array([qrscore(m[h], r) for h in range(m.shape[0])]))
    n_layers = num_layers if num_layers is not None else max(a for a, _ in head_list) + 1
    n_heads = num_heads if num_heads is not None else max(b for _, b in head_list) + 1
    return HeadRanking(
        heads=tuple(head_list),
        per_example=np.stack(rows),
        metric=key,
        num_layers=n_layers,
        num_heads=n_heads,
        model=model,
    )


def rank_head_scores(
    results: Sequence[HeadScores],
    examples: Sequence[DetectionExample],
    metric: str = DEFAULT_METRIC,
    *,
    num_layers: int | None = None,
    num_heads: int | None = None,
    model: str | None = None,
) -> HeadRanking:
    """:func:`rank_heads` over the output of :func:`collect_head_scores` (picks scores or mass by metric).

    Example:
        >>> results = collect_head_scores(scorer, examples)  # doctest: +SKIP
        >>> rank_head_scores(results, examples, "qrscore").top(3)  # doctest: +SKIP
    """
    key = check_metric(metric)
    if not results:
        raise DetectionError("no examples; detection needs at least one labelled example")
    heads = results[0].heads
    mats = [r.mass if key == "qrscore" else r.scores for r in results]
    return rank_heads(
        mats,
        [e.relevance for e in examples],
        heads=heads,
        metric=key,
        num_layers=num_layers,
        num_heads=num_heads,
        model=model,
    )


# ---------------------------------------------------------------------------------------------- forward passes
def check_max_layers(max_layers: int | None) -> None:
    """``max_layers`` must be ``None`` or a positive integer (raises :class:`DetectionError`)."""
    if max_layers is not None and (isinstance(max_layers, bool) or not isinstance(max_layers, int) or max_layers < 1):
        raise DetectionError(f"max_layers must be a positive integer or None, got {max_layers!r}")


def _as_scorer(scorer_or_model: Any, device: str) -> QRScorer:
    from .config import QRHEAD_SCORING
    from .scorer import QRScorer

    if isinstance(scorer_or_model, QRScorer):
        return scorer_or_model
    if scorer_or_model is None or isinstance(scorer_or_model, (str, os.PathLike)):
        # QRHead's own scoring, as the shipped head sets were detected (no position corrections)
        return QRScorer(scorer_or_model, heads="all", device=device, **QRHEAD_SCORING)
    raise TypeError(
        f"scorer_or_model must be a QRScorer, a model id/path, or None for the embedded model; "
        f"got {type(scorer_or_model).__name__}"
    )


def collect_head_scores(
    scorer_or_model: QRScorer | str | os.PathLike[str] | None,
    examples: Iterable[Any] | str | os.PathLike[str],
    *,
    show_progress: bool = False,
    device: str = "auto",
    max_layers: int | None = None,
) -> list[HeadScores]:
    """Every head's chunk scores on each example: one all-heads forward pass per example.

    With ``max_layers``, only the heads of the first ``max_layers`` layers are scored and each pass stops
    there.

    Example:
        >>> results = collect_head_scores(None, [("Who wrote Hamlet?", ["Paris.", "Shakespeare wrote Hamlet."], [1])])
        >>> results[0].scores.shape  # 30 layers x 9 heads of the embedded model, 2 chunks
        torch.Size([270, 2])
    """
    items = _examples(examples)
    scorer = _as_scorer(scorer_or_model, device)
    iterator: Iterable[DetectionExample] = items
    if show_progress:
        from tqdm.auto import tqdm

        iterator = tqdm(items, desc="detecting heads", unit="example")
    check_max_layers(max_layers)
    heads: Any = "all"
    lm = scorer.loaded
    if max_layers is not None and max_layers < lm.num_layers:
        heads = [(layer, h) for layer in range(max_layers) for h in range(lm.num_heads)]
    return [scorer.head_scores(e.query, list(e.chunks), heads=heads) for e in iterator]


def score_heads(
    scorer_or_model: QRScorer | str | os.PathLike[str] | None,
    examples: Iterable[Any] | str | os.PathLike[str],
    metric: str = DEFAULT_METRIC,
    *,
    show_progress: bool = False,
    device: str = "auto",
    max_layers: int | None = None,
) -> HeadRanking:
    """Run the forward passes and rank every head of the model (the full result behind :func:`detect_heads`).

    Example:
        >>> ranking = score_heads(None, [("Who wrote Hamlet?", ["Paris.", "Shakespeare wrote Hamlet."], [1])])
        >>> len(ranking.heads)
        270
    """
    key = check_metric(metric)
    items = _examples(examples)
    scorer = _as_scorer(scorer_or_model, device)
    results = collect_head_scores(scorer, items, show_progress=show_progress, max_layers=max_layers)
    lm = scorer.loaded
    return rank_head_scores(results, items, key, num_layers=lm.num_layers, num_heads=lm.num_heads, model=lm.name)


def detect_heads(
    scorer_or_model: QRScorer | str | os.PathLike[str] | None,
    examples: Iterable[Any] | str | os.PathLike[str],
    top_k: int = 16,
    metric: str = DEFAULT_METRIC,
    *,
    name: str | None = None,
    show_progress: bool = False,
    device: str = "auto",
    max_layers: int | None = None,
) -> HeadSet:
    """Detect a model's query-focused retrieval heads from labelled examples.

    Runs the all-heads scorer once per example, ranks every ``(layer, head)`` by its own retrieval quality
    (``metric``), and returns the best ``top_k`` as a :class:`HeadSet` with each head's score, the model's
    name and shape. Save it with ``.to_yaml(path)``; use it with ``QRScorer(model, heads=path)``.

    Args:
        scorer_or_model: a :class:`QRScorer` (its model is used; all heads are scored whatever its head set),
            or a model id / folder / ``.gguf`` path, or ``None`` for the embedded model.
        examples: ``(query, chunks, gold[, grades])`` tuples, mappings with ``query``/``chunks``/``gold``,
            :class:`DetectionExample` objects, or the path of a JSONL file of such mappings.
        top_k: how many heads to keep (16 in the paper for 1B-8B models).
        metric: ``"ndcg@10"`` (any ``"ndcg@K"``, graded or binary) or ``"qrscore"``.
        name: the head set's name.
        show_progress: show a progress bar over the examples.
        device: device when a model (not a scorer) is given.
        max_layers: a depth budget: consider only heads in the first ``max_layers`` layers. Detection
            passes stop there, and so does every scoring pass with the result; see docs/heads.md for
            what each budget cost and gained on the embedded model.

    Returns:
        The detected :class:`HeadSet`, best head first.

    Raises:
        DetectionError: an example without gold chunks, a gold id that names no chunk, a bad metric or ``top_k``.

    Warns:
        HeadTieWarning: heads left out score the same as the last one kept (too few or too easy examples).

    Example:
        >>> from qr_integrations import detect_heads
        >>> examples = [("Which fruit has potassium?", ["Paris is in France.", "Bananas have potassium."], [1])]
        >>> heads = detect_heads(None, examples, top_k=4)  # the embedded SmolLM2-135M-Instruct
        >>> len(heads.heads), heads.metric
        (4, 'ndcg@10')
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise DetectionError(f"top_k must be a positive integer, got {top_k!r}")
    ranking = score_heads(scorer_or_model, examples, metric, show_progress=show_progress, device=device,
                          max_layers=max_layers)
    heads = ranking.head_set(top_k, name=name, max_layers=max_layers)
    tie = ranking.tie_warning(top_k, max_layers)
    if tie is not None:
        warnings.warn(tie, HeadTieWarning, stacklevel=2)
    return heads


# ---------------------------------------------------------------------------------------------- plot
def plot_head_ranking(
    ranking: HeadRanking,
    path: str | os.PathLike[str] | None = None,
    *,
    top_k: int = 16,
    title: str | None = None,
) -> Any:
    """Heatmap (layers x heads) of a :class:`HeadRanking`, the best ``top_k`` heads boxed; PNG if ``path``.

    Example:
        >>> plot_head_ranking(ranking, "heads.png")  # doctest: +SKIP
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'qr-integrations[plots]'") from exc
    grid = ranking.grid()
    width = max(4.0, 0.32 * ranking.num_heads + 2.2)
    height = max(3.0, 0.22 * ranking.num_layers + 1.4)
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
    for rank, ((layer, head), _) in enumerate(ranking.top(min(top_k, len(ranking.heads))), start=1):
        ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.6))
        if rank <= 3:
            ax.text(head, layer, str(rank), ha="center", va="center", color="white", fontsize=7, fontweight="bold")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(ranking.num_heads))
    step = 1 if ranking.num_layers <= 16 else 2
    ax.set_yticks(range(0, ranking.num_layers, step))
    ax.tick_params(labelsize=7)
    label = {"qrscore": "QRScore"}.get(ranking.metric, ranking.metric.replace("ndcg", "nDCG"))
    fig.colorbar(im, ax=ax, label=f"mean {label}")
    ax.set_title(
        title or f"{ranking.model or 'model'}: {label} per head, {ranking.num_examples} examples (top {top_k} boxed)",
        fontsize=8,
    )
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path))
        plt.close(fig)
    return fig
