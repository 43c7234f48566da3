"""The single question, cheaper (issue #12, item 6): head sets under a depth budget, int8 linear layers, threads.

One question over 10-20 fresh candidates is the common call. Its cost is one forward pass through the
layers up to the deepest selected head (the pass stops there), so three levers are measured:

* **depth budget**: the shipped detection (SciFact train + HotpotQA 0-49, nDCG@10, the cached all-heads
  passes of ``python -m benchmarks run detect-heads --step collect``) restricted to heads in the first ``L`` layers
  (:meth:`HeadRanking.head_set` with ``max_layers=L``), top 16 each;
* **int8**: ``QRScorer(quantize="int8")`` (dynamically quantised linear layers on the CPU);
* **threads**: 1 against 2 torch threads.

Stages:

* ``vectors``: one all-heads pass per held-out query, float32 and int8 (:meth:`QRScorer.head_attention`,
  kept compact under ``benchmarks/.cache/depth_budget/``), on the user's path: candidates best first in the
  adapters' default ``reversed`` layout. SciFact test: BM25 top-20, abstracts cut to 150 words as in
  ``benchmarks.retriever_order``; HotpotQA 50-99: the 10 paragraphs in BM25 order. Every budget's scores
  come from these vectors (the same aggregation as the scorer; ``benchmarks.headvectors``);
* ``time`` (an idle machine only): ``scorer.score`` with each budget's set, and with int8 and 2 threads,
  over the first ``--time-queries`` SciFact queries, in interleaved rounds, as ratios to the shipped set
  in float32 on 1 thread;
* ``report``: quality per budget and precision, with paired tests against the shipped set, and the
  quality-against-time frontier as a picture.

Run (vectors may share the machine; time may not):
    .venv/bin/python -m benchmarks run depth-budget --step vectors --threads 1
    .venv/bin/python -m benchmarks run depth-budget --step time --threads 1
    .venv/bin/python -m benchmarks run depth-budget --step report
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from . import detect_heads as D
from . import harness as H
from . import retriever_order as R

BUDGETS = (6, 9, 12, 15, 18, 21, 24)
SHIPPED = "smollm2-135m-instruct-mix"
LAYOUT = "reversed"
PRECISIONS = ("float32", "int8")
CACHE = H.CACHE_DIR / "depth_budget"


SHIP = (9, 18)  # the budgets shipped as named (non-default) sets; see docs/benchmarks.md for why these


def ship(sets: dict[int, Any]) -> None:
    """Write the chosen budgets' sets into the package as ``smollm2-135m-instruct-mix-l<b>`` (not default)."""
    for b in SHIP:
        hs = sets[b]
        name = f"smollm2-135m-instruct-mix-l{b}"
        body = {**hs.to_dict(), "name": name, "default": False,
                "source": f"benchmarks/depth_budget.py: top 16 by ndcg@10 within layers 0-{b - 1}, the shipped "
                          f"detection's {D.SIZES['smollm2'][0] + D.SIZES['smollm2'][1]} examples (SciFact train + "
                          "HotpotQA 0-49)"}
        body = {k: v for k, v in body.items() if k not in ("heads", "scores")} | {"heads": body["heads"],
                                                                                  "scores": body["scores"]}
        text = "# Depth-budget set (benchmarks/depth_budget.py); see docs/heads.md\n" + D.head_set_yaml(body)
        (D.HEADSETS / f"{name}.yaml").write_text(text, encoding="utf-8")


def budget_sets() -> dict[int, Any]:
    """Top-16 head set per depth budget, from the shipped detection's cached passes (mix, nDCG@10)."""
    d_sci, d_hot, _, _ = D.SIZES["smollm2"]
    ranking = D.rankings("smollm2", d_sci, d_hot)[("mix", "ndcg@10")]
    return {b: ranking.head_set(16, name=f"smollm2-135m-instruct-mix-L{b}", max_layers=b) for b in BUDGETS}


def items(args: Any) -> tuple[list[tuple[str, Any]], dict[str, dict[str, int]]]:
    """``(dataset, item)`` pairs in BM25 order: SciFact test (first ``--scifact``), HotpotQA 50.. (``--hotpot``)."""
    sci, sci_qrels = R.scifact_items(args.data_dir, 20, 150, args.scifact)
    hot, hot_qrels = R.hotpot_items(args.data_dir, 50 + args.hotpot)
    held_out = {q["idx"] for q in H.hotpot_questions(args.data_dir, 50, args.hotpot)}
    chosen = [("scifact", it) for it in sci if it.retriever == "bm25"]
    chosen += [("hotpotqa", it) for it in hot if it.retriever == "bm25" and it.qid in held_out]
    return chosen, {**sci_qrels, **hot_qrels}


def vector_path(precision: str, it: Any) -> Path:
    key = R.content_key(it.query, it.texts, LAYOUT, "all", precision)
    return CACHE / precision / f"{key}.pt"


def stage_vectors(args: Any) -> None:
    from qr_integrations import QRScorer

    chosen, _ = items(args)
    for precision in args.precisions:
        todo = [it for _, it in chosen if not vector_path(precision, it).is_file()]
        if not todo:
            continue
        scorer = QRScorer(heads="all", device="cpu", layout=LAYOUT, num_threads=args.threads,
                          quantize=None if precision == "float32" else precision)
        for it in H.progress(todo, desc=f"all-heads passes {precision}", disable=args.no_progress):
            t0 = time.perf_counter()
            att = scorer.head_attention(it.query, it.texts, "all").compact()
            path = vector_path(precision, it)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"attention": att, "seconds": time.perf_counter() - t0}, path.with_suffix(".tmp"))
            path.with_suffix(".tmp").replace(path)


def stage_time(args: Any) -> dict[str, Any]:
    """Interleaved rounds over the first ``--time-queries`` SciFact items; the median per variant."""
    from qr_integrations import QRScorer

    chosen, _ = items(args)
    sci = [it for ds, it in chosen if ds == "scifact"][: args.time_queries]
    sets = budget_sets()
    variants: dict[str, Any] = {}
    for b, hs in sets.items():
        variants[f"L{b} float32 1 thread"] = QRScorer(heads=hs, device="cpu", layout=LAYOUT, num_threads=1)
    variants["shipped int8 1 thread"] = QRScorer(device="cpu", layout=LAYOUT, num_threads=1, quantize="int8")
    variants["shipped float32 2 threads"] = QRScorer(device="cpu", layout=LAYOUT, num_threads=2)
    variants["shipped int8 2 threads"] = QRScorer(device="cpu", layout=LAYOUT, num_threads=2, quantize="int8")
    for s in variants.values():
        s.score("warm up", ["one", "two"])
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    total = len(sci) * len(variants)
    bar = H.progress(range(total), total=total, desc="timing", disable=args.no_progress)
    tick = iter(bar)
    for it in sci:
        for name, s in variants.items():
            t0 = time.perf_counter()
            s.score(it.query, it.texts)
            seconds[name].append(time.perf_counter() - t0)
            next(tick, None)
    base = f"L{max(BUDGETS)} float32 1 thread"
    med = {k: statistics.median(v) for k, v in seconds.items()}
    ratios = {k: med[k] / med[base] for k in med}
    out = {"seconds": seconds, "median_s": med, "ratio_to_shipped": ratios, "queries": [it.qid for it in sci],
           "layers": {f"L{b} float32 1 thread": max(h[0] for h in hs.heads) + 1 for b, hs in sets.items()}}
    H.write_results("depth_budget_time", out, H.markdown_table(
        ["variant", "median s per query", "ratio to shipped (float32, 1 thread)"],
        [[k, med[k], ratios[k]] for k in variants]))
    return out


def stage_report(args: Any) -> None:
    import json

    chosen, qrels = items(args)
    sets = budget_sets()
    if args.ship:
        ship(sets)
    shipped_heads = set(map(tuple, sets[max(BUDGETS)].heads))
    metrics = {"scifact": ["ndcg@10"], "hotpotqa": ["recall@2", "recall@5", "ndcg@10"]}
    runs: dict[tuple[str, str, str], dict[str, dict[str, float]]] = {}
    for ds, it in chosen:
        runs.setdefault((ds, "BM25", "-"), {})[it.qid] = H.ranking_to_run(it.ids, it.retriever_scores)
        for precision in PRECISIONS:
            path = vector_path(precision, it)
            if not path.is_file():
                continue
            att = torch.load(path, weights_only=False)["attention"]
            for b, hs in sets.items():
                runs.setdefault((ds, f"L{b}", precision), {})[it.qid] = H.ranking_to_run(it.ids, att.scores(hs))
    agreement = int8_agreement(chosen, sets)
    timing_path = H.RESULTS_DIR / "depth_budget_time.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else None
    rows, record, frontier = [], {}, {}
    def order(kv: Any) -> tuple[str, int, int]:
        (ds, label, precision), _ = kv
        return ds, PRECISIONS.index(precision) if precision in PRECISIONS else -1, int(label[1:]) if label[1:].isdigit() else 0

    for (ds, label, precision), run in sorted(runs.items(), key=order):
        mean, _ = H.evaluate(qrels, run, metrics[ds])
        ref = runs.get((ds, f"L{max(BUDGETS)}", "float32"), {})
        test = H.paired_tests(qrels, {"x": run, "ref": ref}, "x", metrics[ds][0])["ref"] if ref and run is not ref else None
        hs = sets.get(int(label[1:])) if label.startswith("L") else None
        layers = max(h[0] for h in hs.heads) + 1 if hs is not None else 0
        shared = len(shipped_heads & set(map(tuple, hs.heads))) if hs is not None else 0
        key = f"{label} float32 1 thread" if precision == "float32" else ("shipped int8 1 thread" if label == f"L{max(BUDGETS)}" else None)
        ratio = timing["ratio_to_shipped"].get(key) if timing and key else None
        rows.append([ds, label, precision, layers or "-", shared or "-", *[mean[m] for m in metrics[ds]],
                     *([""] * (3 - len(metrics[ds]))), H.format_p(test["p"]) if test else "-",
                     "-" if ratio is None else f"{ratio:.2f}"])
        record[f"{ds}/{label}/{precision}"] = {"mean": mean, "n": len(run), "layers": layers, "test_vs_shipped": test,
                                              "time_ratio": ratio, "heads": hs.to_string() if hs else None}
        if ratio is not None:
            frontier.setdefault(ds, {})[f"{label} {precision}"] = (ratio, mean[metrics[ds][0]])
    table = H.markdown_table(["data", "heads", "precision", "layers run", "heads shared with shipped", "metric 1",
                              "metric 2", "metric 3", "p vs shipped float32", "time vs shipped"], rows)
    legend = ("metric 1-3: SciFact nDCG@10; HotpotQA Recall@2, Recall@5, nDCG@10. `L<b>`: top 16 heads of the "
              "shipped detection within the first b layers (L24 is the shipped set).")
    table += "\n\n" + H.markdown_table(
        ["data", "heads", "queries", "Kendall tau int8 vs float32 (mean)", "same top 1", "top 5 overlap (mean)"],
        [[ds, f"L{b}", a["n"], a["tau"], a["top1"], a["top5"]] for (ds, b), a in sorted(agreement.items())])
    record["int8_agreement"] = {f"{ds}/L{b}": a for (ds, b), a in agreement.items()}
    img = None
    if frontier:
        img = frontier_plot(frontier, H.IMG_DIR / "depth_budget.png")
    H.write_results("depth_budget", {"records": record, "plot": str(img) if img else None}, table + "\n\n" + legend)
    print(table)
    print(legend)


def int8_agreement(chosen: list[tuple[str, Any]], sets: dict[int, Any]) -> dict[tuple[str, int], dict[str, float]]:
    """Per dataset and budget: how int8's chunk scores agree with float32's on the same queries."""
    from scipy.stats import kendalltau

    per: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for ds, it in chosen:
        paths = [vector_path(p, it) for p in PRECISIONS]
        if not all(p.is_file() for p in paths):
            continue
        a, b = (torch.load(p, weights_only=False)["attention"] for p in paths)
        for budget, hs in sets.items():
            x, y = a.scores(hs), b.scores(hs)
            ox = sorted(range(len(x)), key=lambda i, v=x: -v[i])
            oy = sorted(range(len(y)), key=lambda i, v=y: -v[i])
            tau = float(kendalltau(x, y).statistic)
            per.setdefault((ds, budget), []).append((tau, float(ox[0] == oy[0]), len(set(ox[:5]) & set(oy[:5])) / 5))
    return {k: {"n": len(v), "tau": statistics.fmean(t for t, _, _ in v), "top1": statistics.fmean(o for _, o, _ in v),
                "top5": statistics.fmean(f for _, _, f in v)} for k, v in per.items()}


def frontier_plot(frontier: dict[str, dict[str, tuple[float, float]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(frontier), figsize=(5.5 * len(frontier), 4), squeeze=False)
    for ax, (ds, pts) in zip(axes[0], sorted(frontier.items()), strict=True):
        for label, (x, y) in pts.items():
            ax.scatter([x], [y], color="tab:orange" if "int8" in label else "tab:blue")
            ax.annotate(label.replace(" float32", ""), (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("time per query / shipped set (float32, 1 thread)")
        ax.set_ylabel("nDCG@10" if ds == "scifact" else "Recall@2")
        ax.set_title(f"{ds}: quality against time")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    p = H.common_parser(__doc__.splitlines()[0])
    p.add_argument("--stage", choices=["vectors", "time", "report"], required=True)
    p.add_argument("--scifact", type=int, default=20, help="SciFact test queries (BM25 top-20)")
    p.add_argument("--hotpot", type=int, default=50, help="HotpotQA questions from 50 on")
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                   help="vectors: which precisions to compute")
    p.add_argument("--ship", action="store_true", help="report: also write the SHIP budgets' sets into the package")
    p.add_argument("--time-queries", type=int, default=5, help="SciFact queries timed per variant")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    {"vectors": stage_vectors, "time": stage_time, "report": stage_report}[args.stage](args)
