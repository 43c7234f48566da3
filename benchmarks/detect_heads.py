"""Recipe: detect QR heads for the embedded models on training data, then evaluate them on held-out data.

Stages (each caches what it computes under ``benchmarks/results/tmp/heads/``; rerunning skips cached work):

* ``collect``: one all-heads forward pass per detection example (:meth:`QRScorer.head_scores`), saved as npz;
* ``detect``: rank every head by nDCG@10 (and by QRScore) on SciFact train, on HotpotQA 0-49, and on both;
  write head-set YAML files, the heatmaps, and the shipped package head sets;
* ``eval``: one forward pass per held-out query scoring every compared head set
  (:meth:`QRScorer.score_head_sets`): detected, all heads, 5 x 16 random heads, the single best head;
* ``report``: metrics as JSON + Markdown under ``benchmarks/results/``.

Run from the repository root (see docs/heads.md for the exact commands and sizes)::

    .venv/bin/python -m benchmarks run detect-heads --step all --model smollm2
    .venv/bin/python -m benchmarks run detect-heads --step all --model qwen
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import harness as H
from benchmarks import heads_data as data

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "tmp" / "heads"
IMG = ROOT / "docs" / "img"
HEADSETS = ROOT / "qr_integrations" / "core" / "headsets"

MODELS = {"smollm2": "smollm2-135m-instruct", "qwen": "qwen2.5-coder-0.5b-instruct"}

# Sizes (CPU budget: 2 shared cores). Passages are cut to these many words; SciFact has 20 BM25 candidates.
SCIFACT_WORDS = 40
HOTPOT_WORDS = 64
CANDIDATES = 20
TOP_K = 16
RANDOM_SEEDS = (0, 1, 2, 3, 4)


def model_arg(key: str) -> str | None:
    """The ``QRScorer`` model argument for a recipe model key."""
    if key == "smollm2":
        return None
    from benchmarks.qwen import qwen_gguf_path

    return str(qwen_gguf_path())


def detection_sets(n_scifact: int, n_hotpot: int) -> dict[str, list[data.Example]]:
    """The detection examples: SciFact train with our BM25 top-20, and HotpotQA questions 0-49."""
    return {
        "scifact": data.scifact_train(n_scifact, CANDIDATES, SCIFACT_WORDS),
        "hotpotqa": data.hotpotqa("detect", n_hotpot, HOTPOT_WORDS),
    }


def eval_sets(n_scifact: int, n_hotpot: int) -> dict[str, list[data.Example]]:
    """The held-out examples: SciFact test (shared BM25 top-20) and HotpotQA questions 50-99."""
    return {
        "scifact": data.scifact_test(n_scifact, CANDIDATES, SCIFACT_WORDS),
        "hotpotqa": data.hotpotqa("eval", n_hotpot, HOTPOT_WORDS),
    }


def _interleave(sets: dict[str, list[data.Example]]) -> Iterator[tuple[str, data.Example]]:
    longest = max((len(v) for v in sets.values()), default=0)
    for i in range(longest):
        for name, examples in sets.items():
            if i < len(examples):
                yield name, examples[i]


def _scorer(key: str, threads: int | None) -> Any:
    import torch

    from qr_integrations import QRScorer

    if threads:
        torch.set_num_threads(threads)
    return QRScorer(model_arg(key), heads="all", device="cpu")


# ---------------------------------------------------------------------------------------------- collect
def collect_path(key: str, dataset: str, qid: str) -> Path:
    """Cache file of one detection example's per-head scores."""
    return CACHE / key / f"detect-{dataset}-w{SCIFACT_WORDS if dataset == 'scifact' else HOTPOT_WORDS}" / f"{qid}.npz"


def stage_collect(key: str, n_scifact: int, n_hotpot: int, threads: int | None) -> None:
    """All-heads forward passes over the detection examples (cached per example)."""
    from tqdm.auto import tqdm

    sets = detection_sets(n_scifact, n_hotpot)
    todo = [(name, ex) for name, ex in _interleave(sets) if not collect_path(key, name, ex.qid).is_file()]
    print(f"[collect {key}] {sum(map(len, sets.values()))} detection examples, {len(todo)} to compute", flush=True)
    if not todo:
        return
    scorer = _scorer(key, threads)
    for name, ex in tqdm(todo, desc=f"detect passes {key}", unit="ex", mininterval=5):
        t0 = time.perf_counter()
        hs = scorer.head_scores(ex.query, ex.chunks, heads="all")
        path = collect_path(key, name, ex.qid)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            heads=np.array(hs.heads, dtype=np.int64),
            scores=hs.scores.numpy(),
            mass=hs.mass.numpy(),
            relevance=np.array(ex.relevance, dtype=np.int64),
            seconds=np.array(time.perf_counter() - t0),
        )


# ---------------------------------------------------------------------------------------------- detect
SOURCES = ("scifact", "hotpotqa", "mix")
METRICS = ("ndcg@10", "qrscore")
SOURCE_TEXT = {
    "scifact": "SciFact train queries, our BM25 top-20 (title + {sw} words, best nearest the query)",
    "hotpotqa": "HotpotQA distractor questions 0-49 (10 paragraphs, {hw} words)",
    "mix": "SciFact train (BM25 top-20, {sw} words) + HotpotQA questions 0-49 ({hw} words)",
}


def _cached_detection(key: str, n_scifact: int, n_hotpot: int) -> dict[str, list[dict[str, np.ndarray]]]:
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    for name, examples in detection_sets(n_scifact, n_hotpot).items():
        rows = []
        for ex in examples:
            path = collect_path(key, name, ex.qid)
            if path.is_file():
                with np.load(path) as z:
                    rows.append({k: z[k] for k in z.files})
        out[name] = rows
    return out


def rankings(key: str, n_scifact: int, n_hotpot: int) -> dict[tuple[str, str], Any]:
    from qr_integrations.core.detection import rank_heads

    cached = _cached_detection(key, n_scifact, n_hotpot)
    if not cached["scifact"] or not cached["hotpotqa"]:
        raise SystemExit(f"no cached detection passes for {key}: run --stage collect first")
    heads = [tuple(int(x) for x in h) for h in cached["scifact"][0]["heads"]]
    num_layers = max(h[0] for h in heads) + 1
    num_heads = max(h[1] for h in heads) + 1
    groups = {"scifact": cached["scifact"], "hotpotqa": cached["hotpotqa"], "mix": cached["scifact"] + cached["hotpotqa"]}
    out = {}
    for source, rows in groups.items():
        for metric in METRICS:
            field_name = "mass" if metric == "qrscore" else "scores"
            out[(source, metric)] = rank_heads(
                [r[field_name] for r in rows],
                [r["relevance"] for r in rows],
                heads=heads,  # type: ignore[arg-type]
                metric=metric,
                num_layers=num_layers,
                num_heads=num_heads,
                model=MODELS[key],
            )
    return out


def set_name(key: str, source: str, metric: str) -> str:
    """File/set name of a detected head set, e.g. ``smollm2-135m-instruct-scifact`` (nDCG) or ``...-scifact-qrscore``."""
    return f"{MODELS[key]}-{source}" + ("" if metric == "ndcg@10" else "-qrscore")


def stage_detect(key: str, n_scifact: int, n_hotpot: int, ship: bool = False) -> dict[str, Any]:
    """Rank heads on the cached passes, write head sets and heatmaps (and the package data if ``ship``)."""
    ranked = rankings(key, n_scifact, n_hotpot)
    out_dir = RESULTS / "headsets"
    out_dir.mkdir(parents=True, exist_ok=True)
    IMG.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"model": MODELS[key], "top_k": TOP_K, "sets": {}}
    for (source, metric), ranking in ranked.items():
        name = set_name(key, source, metric)
        text = SOURCE_TEXT[source].format(sw=SCIFACT_WORDS, hw=HOTPOT_WORDS)
        source_line = (
            f"benchmarks/detect_heads.py: top {TOP_K} by {metric} on {ranking.num_examples} examples: {text}"
        )
        hs = ranking.head_set(TOP_K, name=name, source=source_line)
        body = hs.to_dict()
        if source == "mix" and metric == "ndcg@10":
            body = {**{k: v for k, v in body.items() if k != "heads" and k != "scores"}, "default": True,
                    "heads": body["heads"], "scores": body["scores"]}
        header = "# Detected by qr-integrations (benchmarks/detect_heads.py); see docs/heads.md\n"
        text_yaml = header + head_set_yaml(body)
        (out_dir / f"{name}.yaml").write_text(text_yaml, encoding="utf-8")
        if ship and metric == "ndcg@10":  # shipped as package data
            (HEADSETS / f"{name}.yaml").write_text(text_yaml, encoding="utf-8")
        label = "nDCG@10" if metric == "ndcg@10" else "QRScore"
        if metric == "ndcg@10" or source == "mix":
            ranking.plot(
                IMG / f"heads_{key}_{source}_{metric.replace('@', '')}.png",
                top_k=TOP_K,
                title=f"{MODELS[key]}: {label} per head on {source} ({ranking.num_examples} examples), top {TOP_K} boxed",
            )
        summary["sets"][name] = {
            "source": source,
            "metric": metric,
            "num_examples": ranking.num_examples,
            "heads": hs.to_string(),
            "scores": [round(x, 4) for x in (hs.scores or ())],
            "best_single": f"{ranking.top(1)[0][0][0]}-{ranking.top(1)[0][0][1]}",
            "mean_all_heads": round(float(np.nanmean(ranking.values)), 4),
        }
    (RESULTS / f"heads_detect_{key}.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(f"[detect {key}] wrote {len(rankings)} head sets; mix/ndcg@10: {summary['sets'][set_name(key, 'mix', 'ndcg@10')]['heads']}")
    return summary


def head_set_yaml(body: dict[str, Any]) -> str:
    import yaml

    heads = body.pop("heads")
    scores = body.pop("scores", None)
    text = yaml.safe_dump(body, sort_keys=False, width=200)
    text += "heads: [" + ", ".join(f"[{a}, {b}]" for a, b in heads) + "]\n"
    if scores is not None:
        text += "scores: [" + ", ".join(f"{s:.4f}" for s in scores) + "]\n"
    return text


# ---------------------------------------------------------------------------------------------- eval
def compared_sets(key: str) -> dict[str, str]:
    """Label -> head spec of every head set compared on held-out data (read from the detect summary)."""
    summary = json.loads((RESULTS / f"heads_detect_{key}.json").read_text(encoding="utf-8"))
    sets = summary["sets"]
    out: dict[str, str] = {"all heads": "all"}
    for source in SOURCES:
        out[f"detected {source} (nDCG@10)"] = sets[set_name(key, source, "ndcg@10")]["heads"]
    for source in SOURCES:
        out[f"detected {source} (QRScore)"] = sets[set_name(key, source, "qrscore")]["heads"]
    for source in SOURCES:
        out[f"best single head {source}"] = sets[set_name(key, source, "ndcg@10")]["best_single"]
    layers, heads = _shape(key)
    all_heads = [(la, h) for la in range(layers) for h in range(heads)]
    for seed in RANDOM_SEEDS:
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(all_heads), size=TOP_K, replace=False)
        out[f"random 16 seed {seed}"] = ",".join(f"{all_heads[i][0]}-{all_heads[i][1]}" for i in pick)
    return out


def _shape(key: str) -> tuple[int, int]:
    import yaml

    data = yaml.safe_load((RESULTS / "headsets" / f"{set_name(key, 'mix', 'ndcg@10')}.yaml").read_text(encoding="utf-8"))
    return int(data["num_layers"]), int(data["num_heads"])


def eval_path(key: str, dataset: str, qid: str) -> Path:
    """Cache file of one held-out query's scores under every compared head set."""
    words = SCIFACT_WORDS if dataset == "scifact" else HOTPOT_WORDS
    return CACHE / key / f"eval-{dataset}-w{words}" / f"{qid}.json"


def stage_eval(key: str, n_scifact: int, n_hotpot: int, threads: int | None) -> None:
    """One forward pass per held-out query scoring all compared head sets (cached; only missing sets rerun)."""
    from tqdm.auto import tqdm

    specs = sorted(set(compared_sets(key).values()))
    sets = eval_sets(n_scifact, n_hotpot)
    todo = []
    for name, ex in _interleave(sets):
        path = eval_path(key, name, ex.qid)
        have = json.loads(path.read_text(encoding="utf-8"))["scores"] if path.is_file() else {}
        missing = [s for s in specs if s not in have]
        if missing:
            todo.append((name, ex, have, missing))
    print(f"[eval {key}] {sum(map(len, sets.values()))} held-out queries, {len(todo)} to compute", flush=True)
    if not todo:
        return
    scorer = _scorer(key, threads)
    for name, ex, have, missing in tqdm(todo, desc=f"eval passes {key}", unit="q", mininterval=5):
        t0 = time.perf_counter()
        got = scorer.score_head_sets(ex.query, ex.chunks, missing)
        have.update({s: [round(x, 7) for x in g] for s, g in zip(missing, got, strict=True)})
        path = eval_path(key, name, ex.qid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"seconds": round(time.perf_counter() - t0, 2), "scores": have}), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- report
def _metrics(scores: list[float], ex: data.Example, dataset: str) -> dict[str, float]:
    from qr_integrations.core.detection import ndcg_at_k

    out = {"ndcg@10": ndcg_at_k(scores, ex.relevance, 10, ideal=ex.all_relevance)}
    if dataset == "hotpotqa":
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        gold = {i for i, r in enumerate(ex.relevance) if r > 0}
        for k in (2, 5):
            out[f"recall@{k}"] = len(gold.intersection(order[:k])) / len(gold)
    return out


def stage_report(key: str, n_scifact: int, n_hotpot: int) -> dict[str, Any]:
    """Held-out metrics of every compared head set, as JSON and a Markdown table."""
    compared = compared_sets(key)
    sets = eval_sets(n_scifact, n_hotpot)
    per_set: dict[str, dict[str, dict[str, list[float]]]] = {}
    counts: dict[str, int] = {}
    seconds: list[float] = []
    for dataset, examples in sets.items():
        rows = []
        for ex in examples:
            path = eval_path(key, dataset, ex.qid)
            if path.is_file():
                cached = json.loads(path.read_text(encoding="utf-8"))
                if all(spec in cached["scores"] for spec in compared.values()):
                    rows.append((ex, cached["scores"]))
                    seconds.append(cached["seconds"])
        counts[dataset] = len(rows)
        for label, spec in [*compared.items(), ("BM25 (first stage)", "")]:
            bucket = per_set.setdefault(label, {}).setdefault(dataset, {})
            for ex, scores in rows:
                s = scores[spec] if spec else (ex.first_stage or data.hotpotqa_bm25(ex))
                for m, v in _metrics(s, ex, dataset).items():
                    bucket.setdefault(m, []).append(v)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for label, by_ds in per_set.items():
        table[label] = {ds: {m: float(np.mean(v)) for m, v in ms.items()} for ds, ms in by_ds.items() if ms}
    # random heads: mean and std over the seeds
    rand = [label for label in table if label.startswith("random 16")]
    if rand:
        agg: dict[str, dict[str, float]] = {}
        for ds in sets:
            for m in table[rand[0]].get(ds, {}):
                vals = [table[r][ds][m] for r in rand]
                agg.setdefault(ds, {})[m] = float(np.mean(vals))
                agg[ds][m + " std"] = float(np.std(vals))
        table["random 16 (mean of 5 seeds)"] = agg
    # paired per-query comparison against all heads (SciFact nDCG@10, HotpotQA nDCG@10)
    paired: dict[str, dict[str, list[int]]] = {}
    for label in compared:
        for ds in sets:
            a = per_set[label].get(ds, {}).get("ndcg@10", [])
            b = per_set["all heads"].get(ds, {}).get("ndcg@10", [])
            paired.setdefault(label, {})[ds] = [
                sum(x > y + 1e-12 for x, y in zip(a, b, strict=True)), sum(y > x + 1e-12 for x, y in zip(a, b, strict=True))
            ]
    result = {
        "model": MODELS[key],
        "queries": counts,
        "sizes": {"scifact_words": SCIFACT_WORDS, "hotpotqa_words": HOTPOT_WORDS, "candidates": CANDIDATES},
        "seconds_per_query": float(np.mean(seconds)) if seconds else None,
        "head_sets": compared,
        "table": table,
        "wins_losses_vs_all": paired,
    }
    (RESULTS / f"heads_eval_{key}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    md = _markdown(result)
    (RESULTS / f"heads_eval_{key}.md").write_text(md, encoding="utf-8")
    print(md)
    return result


ROW_ORDER = [
    "BM25 (first stage)",
    "all heads",
    "detected scifact (nDCG@10)",
    "detected hotpotqa (nDCG@10)",
    "detected mix (nDCG@10)",
    "detected scifact (QRScore)",
    "detected hotpotqa (QRScore)",
    "detected mix (QRScore)",
    "random 16 (mean of 5 seeds)",
    "best single head scifact",
    "best single head hotpotqa",
    "best single head mix",
]


def _markdown(result: dict[str, Any]) -> str:
    t = result["table"]
    q = result["queries"]
    lines = [
        f"### {result['model']}: held-out re-ranking",
        "",
        f"SciFact test: {q.get('scifact', 0)} queries, BM25 top-{CANDIDATES}, nDCG@10. "
        f"HotpotQA questions 50-99: {q.get('hotpotqa', 0)} questions, 10 paragraphs, 2 gold.",
        "",
        "| head set | SciFact nDCG@10 | HotpotQA nDCG@10 | HotpotQA R@2 | HotpotQA R@5 | wins/losses vs all (SciFact; HotpotQA) |",
        "|---|---|---|---|---|---|",
    ]

    def cell(label: str, ds: str, m: str) -> str:
        v = t.get(label, {}).get(ds, {}).get(m)
        if v is None:
            return "-"
        sd = t.get(label, {}).get(ds, {}).get(m + " std")
        return f"{v:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")

    for label in ROW_ORDER:
        if label not in t:
            continue
        wl = result["wins_losses_vs_all"].get(label)
        wl_text = f"{wl['scifact'][0]}/{wl['scifact'][1]}; {wl['hotpotqa'][0]}/{wl['hotpotqa'][1]}" if wl else ""
        if label == "all heads":
            wl_text = ""
        lines.append(
            f"| {label} | {cell(label, 'scifact', 'ndcg@10')} | {cell(label, 'hotpotqa', 'ndcg@10')} | "
            f"{cell(label, 'hotpotqa', 'recall@2')} | {cell(label, 'hotpotqa', 'recall@5')} | {wl_text} |"
        )
    if result.get("seconds_per_query"):
        lines += ["", f"Mean forward time per held-out query (CPU, shared): {result['seconds_per_query']:.1f} s."]
    return "\n".join(lines) + "\n"


# (detect SciFact, detect HotpotQA, eval SciFact, eval HotpotQA): the sizes of the shipped run (docs/heads.md)
SIZES = {"smollm2": (32, 32, 40, 40), "qwen": (16, 16, 12, 12)}


def main(argv: list[str] | None = None) -> None:
    """Command line of the recipe."""
    p = H.BenchParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), required=True)
    p.add_argument("--stage", choices=["collect", "detect", "eval", "report", "all"], default="all")
    p.add_argument("--detect-scifact", type=int, default=None, help="SciFact train queries for detection")
    p.add_argument("--detect-hotpotqa", type=int, default=None, help="HotpotQA questions (of 0-49) for detection")
    p.add_argument("--eval-scifact", type=int, default=None, help="SciFact test queries for evaluation")
    p.add_argument("--eval-hotpotqa", type=int, default=None, help="HotpotQA questions (of 50-99) for evaluation")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--ship", action="store_true", help="also write the nDCG@10 head sets into the package (headsets/)")
    a = p.parse_args(argv)
    d_sci, d_hot, e_sci, e_hot = SIZES[a.model]
    d_sci = a.detect_scifact if a.detect_scifact is not None else d_sci
    d_hot = a.detect_hotpotqa if a.detect_hotpotqa is not None else d_hot
    e_sci = a.eval_scifact if a.eval_scifact is not None else e_sci
    e_hot = a.eval_hotpotqa if a.eval_hotpotqa is not None else e_hot
    stages = ["collect", "detect", "eval", "report"] if a.stage == "all" else [a.stage]
    for stage in stages:
        if stage == "collect":
            stage_collect(a.model, d_sci, d_hot, a.threads)
        elif stage == "detect":
            stage_detect(a.model, d_sci, d_hot, ship=a.ship)
        elif stage == "eval":
            stage_eval(a.model, e_sci, e_hot, a.threads)
        else:
            stage_report(a.model, e_sci, e_hot)
