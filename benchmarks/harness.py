"""The benchmark harness: experiments, arguments, datasets, metrics, paired tests, caching, results and plots.

Every benchmark is an *experiment*: a short declaration (name, topic, data, methods, metrics, result name)
in :mod:`benchmarks.experiments`, run by one entry point, ``python -m benchmarks run NAME`` (``list`` names
them all). The experiments are built from these helpers, so the data files are read the same way, metrics
come from one maintained package (ranx), and every run writes ``benchmarks/results/<name>.json`` (all
numbers, the command, machine and versions) plus ``<name>.md`` (the Markdown table the docs quote).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import importlib
import json
import os
import platform
import re
import shlex
import string
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = Path("../shared/data")
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
IMG_DIR = REPO_ROOT / "docs" / "img"
CACHE_DIR = REPO_ROOT / "benchmarks" / ".cache"

# ---------------------------------------------------------------------------------------------- arguments

MODEL_ALIASES = {"smollm2": None, "embedded": None, "smollm2-135m-instruct": None, "qwen": "qwen", "qwen0.5b": "qwen"}


class BenchParser(argparse.ArgumentParser):
    """An argument parser that knows which experiment it parses for.

    Inside :func:`run_experiment` its usage line reads ``python -m benchmarks run NAME`` and the options the
    experiment fixes (``--dataset`` of ``position-hotpot``, the ``--stage`` a ``--step`` stands for) are hidden.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if _RUNNING is not None:
            kwargs["prog"] = f"python -m benchmarks run {_RUNNING.experiment.name}"
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        hidden = _RUNNING.hidden if _RUNNING is not None else set()
        for action in self._actions:
            if hidden & set(action.option_strings):
                action.help = argparse.SUPPRESS
        return super().parse_args(args, namespace)


def common_parser(description: str, limit: int | None = None) -> argparse.ArgumentParser:
    """The arguments every benchmark takes: ``--data-dir``, ``--limit``, ``--model``, ``--heads``, ..."""
    p = BenchParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder with scifact/ and hotpotqa/")
    p.add_argument("--limit", type=int, default=limit, help="evaluate only the first N queries/questions")
    p.add_argument("--model", default="smollm2", help="smollm2 (embedded), qwen (Qwen2.5-Coder-0.5B), or a path")
    p.add_argument(
        "--heads",
        default=None,
        help="QRHead head set (name, YAML path or 'L-H,...'); default: the model's shipped default set",
    )
    p.add_argument("--out", default=None, help="result name (default: derived from the benchmark and model)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--cross-window", default=None,
                   help="ScorerConfig.cross_window for benchmarks that score inputs past one window "
                        "(default: the library's, overlap; the issue #12 figures used per_window)")
    return p


def scorer_options(args: Any) -> dict[str, Any]:
    """The ``QRScorer`` keywords a benchmark's common arguments set (only ``--cross-window`` so far)."""
    return {"cross_window": args.cross_window} if getattr(args, "cross_window", None) else {}


def resolve_model(name: str) -> str | None:
    """``smollm2`` -> ``None`` (the embedded model), ``qwen`` -> the joined Qwen GGUF path, else as given."""
    key = MODEL_ALIASES.get(name.lower(), name) if isinstance(name, str) else name
    if key is None:
        return None
    if key == "qwen":
        from benchmarks.qwen import qwen_gguf_path

        return str(qwen_gguf_path())
    return key


def model_tag(name: str) -> str:
    """A short file-name-safe tag for a model argument."""
    key = MODEL_ALIASES.get(name.lower(), name)
    if key is None:
        return "smollm2"
    if key == "qwen":
        return "qwen0.5b"
    return re.sub(r"[^a-z0-9.]+", "-", Path(name).stem.lower()).strip("-")


def resolve_data_dir(path: Path) -> Path:
    """Relative data paths are taken from the repository root (so ``../shared/data`` works from anywhere)."""
    path = Path(path)
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def pick_heads(scorer: Any, heads: str | None) -> tuple[Any, str]:
    """The QRHead head set for a run and a note saying where it came from.

    With ``heads=None`` the model's shipped default set is used; when the model has no default, a shipped
    set made for this model (``<model>-*.yaml``) is taken; when there is none, all heads (and the note says so).
    """
    from qr_integrations.core.heads import HeadSet, available_head_sets, normalize_model_name

    if heads:
        hs = HeadSet.parse(heads)
        return hs, f"given: {heads}"
    hs = scorer.head_set
    if not hs.is_all:
        return hs, f"shipped default {hs.name}"
    key = normalize_model_name(scorer.loaded.name)
    names = sorted(n for n in available_head_sets() if n.startswith(key))
    if names:
        return HeadSet.named(names[0]), f"shipped set {names[0]} (the model has no default set)"
    return hs, "all heads: no head set shipped for this model yet"


def qrhead_label(hs: Any, given: str | None) -> str:
    """The QRHead row's name in result tables: says whether the shipped default or a given set was used.

    Example:
        >>> from qr_integrations.core.heads import HeadSet
        >>> qrhead_label(HeadSet.named("smollm2-135m-instruct-scifact"), "smollm2-135m-instruct-scifact")
        'QRHead (smollm2-135m-instruct-scifact)'
        >>> qrhead_label(HeadSet.parse("all"), None)
        'QRHead (= all heads)'
    """
    if hs.is_all:
        return "QRHead (= all heads)"
    if given is None:
        return "QRHead (shipped heads)"
    return f"QRHead ({hs.name or 'given heads'})"


def head_set_string(hs: Any) -> str:
    return "all" if hs.is_all else ",".join(f"{a}-{b}" for a, b in hs.heads)


# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class BeirData:
    corpus: dict[str, tuple[str, str]]  # doc id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_beir(folder: Path, split: str = "test") -> BeirData:
    """A BEIR folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` (header line, 3 columns)."""
    folder = Path(folder)
    corpus = {str(d["_id"]): (str(d.get("title") or ""), str(d.get("text") or "")) for d in read_jsonl(folder / "corpus.jsonl")}
    queries = {str(q["_id"]): str(q["text"]) for q in read_jsonl(folder / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if i == 0 and not parts[-1].strip().lstrip("-").isdigit():
                continue  # header
            qid, did, rel = parts[0], parts[1], int(parts[-1])
            qrels.setdefault(qid, {})[did] = rel
    return BeirData(corpus, queries, qrels)


def load_candidates(path: Path) -> dict[str, list[tuple[str, float]]]:
    """BM25 candidates: one JSON line per query, ``{"query_id", "candidates": [[doc_id, score], ...]}``."""
    return {str(r["query_id"]): [(str(d), float(s)) for d, s in r["candidates"]] for r in read_jsonl(path)}


def load_hotpot(path: Path) -> list[dict[str, Any]]:
    """HotpotQA questions with paragraphs ``{idx, title, paragraph_text, is_supporting}``."""
    with Path(path).open(encoding="utf-8") as f:
        return json.load(f)


def cut_words(text: str, n: int | None) -> str:
    """The first ``n`` whitespace-separated words of ``text`` (all of them for ``None``)."""
    if n is None:
        return text
    words = text.split()
    return " ".join(words[:n])


# ---------------------------------------------------------------------------------------------- datasets

HOTPOT_FILE = "hotpotqa/hotpotqa_train_100.paragraphs.json"  # 100 distractor questions, 10 paragraphs each
SCIFACT_BM25_FILE = "bm25_top100.test.jsonl"  # the shared BM25 top-100 of every SciFact test query
HOTPOT_METRICS = ["recall@2", "recall@5"]  # of the two supporting paragraphs
HOTPOT_SPLITS = {"dev": (0, 50), "test": (50, 100)}  # 0-49 chose settings and detected the shipped heads


def hotpot_questions(data_dir: Path, start: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
    """HotpotQA questions ``start`` .. ``start + limit - 1`` (all from ``start`` for ``limit=None``)."""
    qs = load_hotpot(resolve_data_dir(data_dir) / HOTPOT_FILE)
    return qs[start: start + limit if limit is not None else None]


def hotpot_qrels(qs: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """The supporting paragraphs of each question, by paragraph ``idx``."""
    return {q["idx"]: {str(p["idx"]): 1 for p in q["paragraphs"] if p["is_supporting"]} for q in qs}


def paragraph_pairs(q: dict[str, Any]) -> list[tuple[str, str]]:
    """A question's paragraphs as ``(title, text)`` chunks, in the dataset's order."""
    return [(p["title"], p["paragraph_text"]) for p in q["paragraphs"]]


def paragraph_texts(q: dict[str, Any]) -> list[str]:
    """A question's paragraphs as one string each (``title. text``), for the methods that read plain text."""
    return [f"{p['title']}. {p['paragraph_text']}" for p in q["paragraphs"]]


def scifact_test(data_dir: Path) -> tuple[BeirData, dict[str, list[tuple[str, float]]]]:
    """SciFact test (corpus, queries, qrels) and its shared BM25 top-100 candidates."""
    folder = resolve_data_dir(data_dir) / "scifact"
    return load_beir(folder, "test"), load_candidates(folder / SCIFACT_BM25_FILE)


def first_sentence(text: str) -> str:
    m = re.match(r"(.+?[.!?])(\s|$)", text.strip())
    return m.group(1) if m else text


def hotpot_shuffled(data_dir: Path, split: str, line: bool = False) -> list[dict[str, Any]]:
    """20 paragraphs per HotpotQA question of ``split``, in no retriever's order: its 10 (two gold) and one
    non-gold paragraph from each of 10 other questions, shuffled (seeded); ``line``: each cut to its first
    sentence. Items ``{qid, query, chunks: [(title, text)], gold: [0/1]}``."""
    import random

    data = load_hotpot(resolve_data_dir(data_dir) / HOTPOT_FILE)
    lo, hi = HOTPOT_SPLITS[split]
    items = []
    for qi in range(lo, min(hi, len(data))):
        ex = data[qi]
        rng = random.Random(1000 + qi)
        own = [(p["title"], p["paragraph_text"], int(bool(p["is_supporting"]))) for p in ex["paragraphs"]]
        extra = []
        for j in rng.sample([j for j in range(len(data)) if j != qi], 10):
            p = rng.choice([p for p in data[j]["paragraphs"] if not p["is_supporting"]])
            extra.append((p["title"], p["paragraph_text"], 0))
        cands = own + extra
        rng.shuffle(cands)
        if line:
            cands = [(t, first_sentence(x), g) for t, x, g in cands]
        items.append({"qid": f"hotpot{qi}", "query": ex["question"], "chunks": [(t, x) for t, x, _ in cands],
                      "gold": [g for *_, g in cands]})
    return items


def scifact_shuffled(data_dir: Path, words: int = 400) -> list[dict[str, Any]]:
    """The BM25 top 20 of each SciFact test query with a relevant abstract among them, abstracts cut to
    ``words`` words, shuffled (seeded)."""
    import random

    d, cands = scifact_test(data_dir)
    items = []
    for qid in sorted(d.qrels, key=int):
        top = [doc for doc, _ in cands.get(qid, [])[:20]]
        if not any(d.qrels[qid].get(doc, 0) > 0 for doc in top):
            continue
        random.Random(2000 + int(qid)).shuffle(top)
        items.append({"qid": qid, "query": d.queries[qid], "ids": top,
                      "chunks": [(d.corpus[doc][0], cut_words(d.corpus[doc][1], words)) for doc in top],
                      "gold": [d.qrels[qid].get(doc, 0) for doc in top]})
    return items


def hotpot_identical(data_dir: Path, n: int = 10) -> list[dict[str, Any]]:
    """5 copies of one gold paragraph among 5 of the question's distractors, shuffled (HotpotQA 50..)."""
    import random

    data = load_hotpot(resolve_data_dir(data_dir) / HOTPOT_FILE)
    items = []
    for qi in range(HOTPOT_SPLITS["test"][0], HOTPOT_SPLITS["test"][0] + n):
        ex = data[qi]
        gold = next(p for p in ex["paragraphs"] if p["is_supporting"])
        others = [p for p in ex["paragraphs"] if not p["is_supporting"]][:5]
        chunks = [(gold["title"], gold["paragraph_text"])] * 5 + [(p["title"], p["paragraph_text"]) for p in others]
        order = list(range(10))
        random.Random(3000 + qi).shuffle(order)
        items.append({"qid": f"ident{qi}", "query": ex["question"], "chunks": [chunks[i] for i in order],
                      "gold": [int(i < 5) for i in order]})
    return items


@dataclass(frozen=True)
class Dataset:
    """A data set or candidate builder an experiment declares: ``builder`` is ``"module:function"``."""

    name: str
    description: str
    builder: str

    def load(self) -> Callable[..., Any]:
        return resolve_callable(self.builder)


DATASETS: dict[str, Dataset] = {d.name: d for d in [
    Dataset("hotpot-distractor", "HotpotQA distractor: 10 paragraphs per question, dataset order",
            "benchmarks.harness:hotpot_questions"),
    Dataset("hotpot-shuffled", "HotpotQA: each question's 10 paragraphs and 10 from other questions, shuffled",
            "benchmarks.harness:hotpot_shuffled"),
    Dataset("hotpot-identical", "HotpotQA: 5 copies of a gold paragraph among 5 distractors, shuffled",
            "benchmarks.harness:hotpot_identical"),
    Dataset("hotpot-retriever-order", "HotpotQA: each question's 10 paragraphs in BM25 and in dense order",
            "benchmarks.retriever_order:hotpot_items"),
    Dataset("hotpot-pools", "HotpotQA: pools of 10 questions' paragraphs (100 chunks), shuffled, optionally merged",
            "benchmarks.long_context:hotpot_pools"),
    Dataset("hotpot-answers", "HotpotQA questions with answers, contexts kept or trimmed before generation",
            "benchmarks.harness:hotpot_questions"),
    Dataset("scifact-bm25", "SciFact test: the shared BM25 top-k candidates per query", "benchmarks.harness:scifact_test"),
    Dataset("scifact-shuffled", "SciFact test: BM25 top 20 with a relevant abstract, shuffled",
            "benchmarks.harness:scifact_shuffled"),
    Dataset("scifact-retriever-order", "SciFact test: BM25 top-k and dense top-k over the whole corpus",
            "benchmarks.retriever_order:scifact_items"),
    Dataset("scifact-pools", "SciFact test: each query's BM25 top-100 abstracts as one long input",
            "benchmarks.long_context:scifact_pools"),
    Dataset("scifact-haystack", "SciFact abstracts as a haystack with a planted fact (needle)",
            "benchmarks.niah:haystack_paragraphs"),
    Dataset("heads-detect", "SciFact train and HotpotQA 0-49 examples for head detection (BM25 top 20)",
            "benchmarks.heads_data:scifact_train"),
    Dataset("heads-eval", "SciFact test and HotpotQA 50-99 examples for held-out head evaluation",
            "benchmarks.heads_data:scifact_test"),
    Dataset("hotpot-bm25-order", "HotpotQA: each question's 10 paragraphs in BM25 order, best first",
            "benchmarks.layout_heads:bm25_ordered"),
    Dataset("hand-written", "the five hand-written questions of tests/conftest.py, gold chunk at each position",
            "benchmarks.position:hand_written"),
    Dataset("long-history", "a multi-session history built from HotpotQA paragraphs, asked many questions",
            "benchmarks.long_memory:build_history"),
    Dataset("token-lengths", "SciFact abstracts concatenated to a given token length (speed and cost)",
            "benchmarks.speed:make_chunks"),
    Dataset("chat-history", "a seeded synthetic history of a given token length with seeded questions",
            "benchmarks.prepared_context:history"),
    Dataset("request-mix", "seeded mixes of score/rank/trim/adapter requests over short sentences",
            "benchmarks.load:make_requests"),
    Dataset("http-requests", "seeded HTTP re-ranking requests (query + 10 documents of 50 words)",
            "benchmarks.serving:make_requests"),
    Dataset("fuzz-inputs", "seeded random text (unicode, whitespace, long words) and huge inputs",
            "benchmarks.stress:random_text"),
]}


def resolve_callable(spec: str) -> Callable[..., Any]:
    """``"package.module:attribute"`` -> the attribute (imported on use, so a declaration costs no import)."""
    module, _, attr = spec.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj


# ---------------------------------------------------------------------------------------------- metrics


def evaluate(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], metrics: Sequence[str]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean and per-query scores with ranx, over the queries of ``run`` only.

    Example:
        >>> mean, per_q = evaluate({"q": {"a": 1}}, {"q": {"a": 0.1, "b": 0.9}}, ["recall@1", "ndcg@10"])
        >>> mean["recall@1"], round(mean["ndcg@10"], 3)
        (0.0, 0.631)
    """
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    qids = [q for q in run if q in qrels and any(v > 0 for v in qrels[q].values())]
    if not qids:
        raise ValueError("no query of the run has relevance judgements")
    q = Qrels({qid: {d: int(r) for d, r in qrels[qid].items()} for qid in qids})
    r = Run({qid: {d: float(s) for d, s in run[qid].items()} for qid in qids})
    ranx_evaluate(q, r, list(metrics), return_mean=False)  # fills r.scores with per-query values
    per_query = {m: {qid: float(r.scores[m][qid]) for qid in qids} for m in metrics}
    mean = {m: float(sum(v.values()) / len(v)) for m, v in per_query.items()}
    return mean, per_query


def paired_tests(
    qrels: Mapping[str, Mapping[str, int]],
    runs: Mapping[str, Mapping[str, Mapping[str, float]]],
    target: str,
    metric: str,
) -> dict[str, dict[str, Any]]:
    """``target`` against every other run on ``metric``: a two-sided paired randomization test per pair.

    Per-query ``metric`` values come from ranx (:func:`evaluate`) over the queries the runs share; the test
    is Fisher's randomization test (swap the two systems' values per query at random), run by
    :func:`paired_score_test` with a fixed seed and 10,000 resamples. ranx's own ``compare`` runs the same
    test, but in parallel numba threads whose random streams its seed does not fix, so its p-values change
    from run to run. Returns, per other run, the p-value, the mean difference and the target's
    wins/ties/losses per query.

    Example:
        >>> qrels = {"a": {"x": 1}, "b": {"y": 1}}
        >>> runs = {"good": {"a": {"x": 2, "y": 1}, "b": {"x": 1, "y": 2}}, "bad": {"a": {"x": 1, "y": 2}, "b": {"x": 2, "y": 1}}}
        >>> paired_tests(qrels, runs, "good", "ndcg@10")["bad"]["wins_ties_losses"]
        [2, 0, 0]
    """
    shared = set.intersection(*(set(r) for r in runs.values()))
    qids = sorted(q for q in shared if q in qrels and any(v > 0 for v in qrels[q].values()))
    per = {name: evaluate(qrels, {q: run[q] for q in qids}, [metric])[1][metric] for name, run in runs.items()}
    out = {}
    for other in runs:
        if other == target:
            continue
        out[other] = paired_score_test([per[target][q] for q in qids], [per[other][q] for q in qids])
    return out


def paired_score_test(a: Sequence[float], b: Sequence[float], n_resamples: int = 10000, seed: int = 0) -> dict[str, Any]:
    """Two-sided paired randomization (sign-flip) test of per-question scores ``a`` against ``b``.

    Any per-question score: answer F1, or the per-query retrieval metrics of :func:`paired_tests`. scipy's
    ``permutation_test`` on the mean difference, swapping each pair's members at random, with a fixed seed.
    Returns the mean difference, the p-value, and ``a``'s wins/ties/losses per question.

    Example:
        >>> t = paired_score_test([1.0] * 12, [0.0] * 12)
        >>> t["wins_ties_losses"], t["p"] < 0.01
        ([12, 0, 0], True)
    """
    import numpy as np
    from scipy.stats import permutation_test

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need two aligned 1-d score lists of at least 2 items, got shapes {x.shape} and {y.shape}")
    res = permutation_test((x, y), lambda u, v, axis: np.mean(u - v, axis=axis), permutation_type="samples",
                           vectorized=True, n_resamples=n_resamples, alternative="two-sided", random_state=seed)
    d = x - y
    return {"mean_diff": float(d.mean()), "p": float(res.pvalue), "n": len(d),
            "wins_ties_losses": [int((d > 0).sum()), int((d == 0).sum()), int((d < 0).sum())]}


def format_p(p: float) -> str:
    """``"p = 0.042"``, or ``"p < 0.001"`` below what three decimals (and 10,000 resamples) can show.

    Example:
        >>> format_p(0.0421), format_p(0.0001)
        ('p = 0.042', 'p < 0.001')
    """
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def describe_tests(tests: Mapping[str, Mapping[str, Any]], names: Mapping[str, str], target: str, metric: str) -> str:
    """One Markdown line that reports :func:`paired_tests`."""
    parts = [f"{names[o]} {format_p(t['p'])} (wins/ties/losses {'/'.join(map(str, t['wins_ties_losses']))})" for o, t in tests.items()]
    n = next(iter(tests.values()))["n"] if tests else 0
    return (f"Paired randomization test of {target} against each method, {metric}, {n} queries (Fisher, per-query "
            f"values from ranx): " + "; ".join(parts))


def ranking_to_run(ids: Sequence[str], scores: Sequence[float]) -> dict[str, float]:
    """Scores as a ranx run entry; ties are broken by input position (earlier first)."""
    n = len(ids)
    return {d: float(s) - 1e-9 * i / max(n, 1) for i, (d, s) in enumerate(zip(ids, scores, strict=True))}


def order_to_scores(order: Sequence[int], n: int) -> list[float]:
    """A ranking (indices best first) as descending scores; indices missing from ``order`` come last."""
    scores = [0.0] * n
    seen = set()
    for r, i in enumerate(order):
        scores[i] = float(n - r)
        seen.add(i)
    rest = [i for i in range(n) if i not in seen]
    for r, i in enumerate(rest):
        scores[i] = -float(r + 1)
    return scores


def budget_select(scores: Sequence[float], counts: Sequence[int], max_tokens: int | None, top_n: int | None = None) -> list[int]:
    """The chunks :meth:`QRScorer.trim` keeps, for any scores: best first, skip what overflows the budget.

    Example:
        >>> budget_select([0.1, 0.9, 0.5], [10, 600, 500], max_tokens=1000)
        [1, 0]
    """
    from qr_integrations.core.aggregate import select_within_budget

    return select_within_budget(scores, counts, max_tokens, top_n)


def normalize_answer(s: str) -> str:
    """SQuAD-style answer normalisation: lower case, no punctuation, no articles, single spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD/HotpotQA token F1 (yes/no/noanswer must match exactly).

    Example:
        >>> round(token_f1("the big cat", "a big dog"), 3)
        0.5
    """
    p, g = normalize_answer(prediction), normalize_answer(gold)
    special = {"yes", "no", "noanswer"}
    if (p in special or g in special) and p != g:
        return 0.0
    pt, gt = p.split(), g.split()
    common = Counter(pt) & Counter(gt)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pt), same / len(gt)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------------------------------------- timing


class Timer:
    """Per-method wall-clock latencies; ``with timer("bm25"): ...`` adds one sample."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self._name: str | None = None
        self._t0 = 0.0

    def __call__(self, name: str) -> Timer:
        self._name = name
        return self

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._name is not None
        self.add(self._name, time.perf_counter() - self._t0)

    def add(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(float(seconds))

    def summary(self) -> dict[str, dict[str, float]]:
        return {k: latency_stats(v) for k, v in self.samples.items()}


def latency_stats(samples: Sequence[float]) -> dict[str, float]:
    """Median and 90th percentile (linear interpolation) in seconds, and the sample count.

    Example:
        >>> latency_stats([1.0, 2.0, 3.0, 4.0, 5.0])
        {'n': 5, 'median_s': 3.0, 'p90_s': 4.6}
    """
    import numpy as np

    if not samples:
        return {"n": 0, "median_s": float("nan"), "p90_s": float("nan")}
    a = np.asarray(samples, dtype=float)
    return {"n": len(samples), "median_s": round(float(np.median(a)), 4), "p90_s": round(float(np.percentile(a, 90)), 4)}


# ---------------------------------------------------------------------------------------------- caching


class JsonlCache:
    """Append-only cache of per-item results (one JSON line per key) so an interrupted run resumes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.data[rec["key"]] = rec["value"]

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, "value": value}) + "\n")

    def timed(self, key: str, fn: Callable[[], Any]) -> tuple[Any, float]:
        """``fn()`` (cached) and the seconds it took when it was computed."""
        hit = self.data.get(key)
        if not (isinstance(hit, dict) and "seconds" in hit and "value" in hit):
            t0 = time.perf_counter()
            value = fn()
            hit = {"value": value, "seconds": time.perf_counter() - t0}
            self.put(key, hit)
        return hit["value"], float(hit["seconds"])

    def get_or_compute(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self.data:
            self.put(key, fn())
        return self.data[key]


def cache_key(*parts: Any) -> str:
    """A short stable hash of the parts (settings that change a result)."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- results


def environment() -> dict[str, Any]:
    """Machine, versions and git commit, recorded with every result."""
    import importlib.metadata as md

    versions = {}
    for dist in ("torch", "transformers", "qr-integrations", "sentence-transformers", "ranx", "bm25s", "llama-index-core",
                 "llama-index-postprocessor-rankgpt-rerank"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=False).stdout.strip() or None
    except OSError:
        commit = None
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average": load,
        "versions": versions,
        "git_commit": commit,
    }


def command_line() -> str:
    """The command that is running, as one would type it from the repository root:
    ``.venv/bin/python -m benchmarks run NAME [options]`` inside :func:`run_experiment`, else the process's own."""
    if _RUNNING is not None:
        return _RUNNING.command
    return shlex.join([sys.executable, *sys.argv])


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 3) -> str:
    """A GitHub Markdown table; floats are rounded to ``digits``.

    Example:
        >>> print(markdown_table(["m", "x"], [["bm25", 0.6789]]))
        | m | x |
        |---|---|
        | bm25 | 0.679 |
    """

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if v != v else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def publish(name: str, payload: dict[str, Any], table: str, bars: Mapping[str, Mapping[str, float]], title: str,
            ylabel: str) -> dict[str, Any]:
    """A benchmark's last step: the bar plot ``docs/img/<name>.png``, then the JSON + Markdown results, then the table."""
    img = bar_plot(bars, title, IMG_DIR / f"{name}.png", ylabel)
    payload["plots"] = [str(img.relative_to(REPO_ROOT))]
    write_results(name, payload, table)
    print(table)
    return payload


def write_results(name: str, payload: dict[str, Any], table: str, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write ``<name>.json`` (payload + command + environment) and ``<name>.md`` (the table + the command)."""
    out = Path(out_dir) if out_dir is not None else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "command": command_line(), "environment": environment(),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
    jpath, mpath = out / f"{name}.json", out / f"{name}.md"
    jpath.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    mpath.write_text(f"{table}\n\nCommand: `{record['command']}`\n", encoding="utf-8")
    return jpath, mpath


def progress(iterable: Iterable[Any], total: int | None = None, desc: str = "", disable: bool = False) -> Iterable[Any]:
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True)


def setup_torch(threads: int | None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads:
        import torch

        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- experiments

TOPICS = ("position", "retriever-order re-ranking", "long inputs", "trimming", "speed and memory", "serving", "heads")


@dataclass(frozen=True)
class Experiment:
    """One experiment, as declared in :mod:`benchmarks.experiments`.

    ``data`` names a :data:`DATASETS` builder and ``methods`` entries of :data:`benchmarks.methods.METHODS`;
    ``metrics`` are ranx metric names or measured quantities; ``result`` is the result name (a pattern where
    it depends on options, e.g. ``scifact_rerank_{model}_{order}_k{k}``). ``run`` is the ``"module:function"``
    that takes the argument list; ``fixed`` arguments are always passed (and hidden from ``--help``);
    ``steps`` maps ``--step`` names to the arguments they stand for (the first is the default unless
    ``step_required``).
    """

    name: str
    topic: str
    description: str
    data: tuple[str, ...]
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    result: str
    run: str
    fixed: tuple[str, ...] = ()
    steps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    step_required: bool = False

    def __post_init__(self) -> None:
        if self.topic not in TOPICS:
            raise ValueError(f"experiment {self.name}: topic {self.topic!r} is not one of {TOPICS}")
        unknown = [d for d in self.data if d not in DATASETS]
        if unknown:
            raise ValueError(f"experiment {self.name}: unknown data {unknown}; see harness.DATASETS")

    def owned_options(self) -> set[str]:
        """The options the experiment sets itself (fixed ones and those behind ``--step``)."""
        args = [*self.fixed, *(a for step in self.steps.values() for a in step)]
        return {a for a in args if a.startswith("--")}

    def summary(self) -> str:
        lines = [f"{self.name} ({self.topic}): {self.description}",
                 f"  data: {', '.join(self.data)}",
                 f"  methods: {', '.join(self.methods)}",
                 f"  metrics: {', '.join(self.metrics)}",
                 f"  result: benchmarks/results/{self.result}.{{json,md}}"]
        if self.steps:
            default = "" if self.step_required else f" (default {next(iter(self.steps))})"
            lines.append(f"  steps: --step {{{','.join(self.steps)}}}{default}")
        return "\n".join(lines)


EXPERIMENTS: dict[str, Experiment] = {}


def experiment(**kwargs: Any) -> Experiment:
    """Declare (register) one experiment; names are unique."""
    exp = Experiment(**kwargs)
    if exp.name in EXPERIMENTS:
        raise ValueError(f"experiment {exp.name} declared twice")
    EXPERIMENTS[exp.name] = exp
    return exp


class UnknownExperimentError(LookupError):
    pass


def find_experiment(name: str) -> Experiment:
    """The declared experiment ``name``; an unknown name raises with the closest names."""
    if name in EXPERIMENTS:
        return EXPERIMENTS[name]
    close = difflib.get_close_matches(name, list(EXPERIMENTS), n=3, cutoff=0.5)
    close += [n for n in EXPERIMENTS if name and name in n and n not in close][: 3 - len(close)]
    hint = f"; did you mean {' or '.join(close)}?" if close else "; 'python -m benchmarks list' names them all"
    raise UnknownExperimentError(f"unknown experiment {name!r}{hint}")


@dataclass
class _Running:
    experiment: Experiment
    command: str
    hidden: set[str]


_RUNNING: _Running | None = None


@contextmanager
def running(exp: Experiment, argv: Sequence[str]) -> Iterator[None]:
    """Inside: result records name ``.venv/bin/python -m benchmarks run NAME ARGV`` as their command, and
    argument parsers (:class:`BenchParser`) show that prog and hide the experiment's own options."""
    global _RUNNING
    before = _RUNNING
    _RUNNING = _Running(exp, " ".join([".venv/bin/python -m benchmarks run", exp.name, *map(shlex.quote, argv)]).rstrip(),
                        exp.owned_options())
    try:
        yield
    finally:
        _RUNNING = before


def experiment_argv(exp: Experiment, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split off ``--step S`` and check the options: the runner's argument list and the one to record."""
    args, step = list(argv), None
    for i, a in enumerate(args):
        if a == "--step" or a.startswith("--step="):
            step = a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
            del args[i: i + (1 if "=" in a else 2)]
            break
    if step is not None and not exp.steps:
        raise SystemExit(f"{exp.name} has no steps; run it without --step")
    recorded = ["--step", step] if step is not None else []
    if step is None and exp.steps:
        if exp.step_required and not {"-h", "--help"} & set(args):
            raise SystemExit(f"{exp.name} needs --step, one of: {', '.join(exp.steps)}")
        step = next(iter(exp.steps))
    if step is not None and step not in exp.steps:
        raise SystemExit(f"{exp.name}: unknown step {step!r}; choose from {', '.join(exp.steps)}")
    owned = exp.owned_options()
    clash = sorted({a.split("=", 1)[0] for a in args} & owned)
    if clash:
        raise SystemExit(f"{exp.name} sets {', '.join(clash)} itself" + (" (use --step)" if exp.steps else ""))
    runner_args = [*exp.fixed, *(exp.steps[step] if step is not None else ()), *args]
    return runner_args, recorded + args


def run_experiment(name: str, argv: Sequence[str] = ()) -> Any:
    """Run the declared experiment ``name`` with its options ``argv`` (what ``python -m benchmarks run`` does)."""
    exp = find_experiment(name)
    runner_args, recorded = experiment_argv(exp, argv)
    fn = resolve_callable(exp.run)
    with running(exp, recorded):
        return fn(runner_args)


# ---------------------------------------------------------------------------------------------- plots


def heatmap(matrix: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], title: str, path: Path,
            xlabel: str = "", ylabel: str = "") -> Path:
    """A 0..1 heatmap with the value written in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(cols), 0.9 + 0.55 * len(rows)))
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, "-" if v != v else f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def line_plot(x: Sequence[float], series: Mapping[str, Sequence[float]], title: str, path: Path, xlabel: str, ylabel: str,
              logx: bool = True, logy: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, ys in series.items():
        pts = [(a, b) for a, b in zip(x, ys, strict=True) if b is not None and b == b]
        if pts:
            ax.plot([a for a, _ in pts], [b for _, b in pts], marker="o", label=label)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bar_plot(groups: Mapping[str, Mapping[str, float]], title: str, path: Path, ylabel: str) -> Path:
    """Grouped bars: ``groups[metric][method] = value``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(groups)
    methods = list(dict.fromkeys(m for g in groups.values() for m in g))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(metrics) + 0.3 * len(methods), 3.8))
    for j, m in enumerate(methods):
        xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(metrics))]
        ys = [groups[g].get(m, float("nan")) for g in metrics]
        bars = ax.bar(xs, ys, width=width, label=m)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
