"""Do heads detected in one prompt layout transfer to the other? (issue #11, item 5)

Candidates as the adapters receive them: HotpotQA's ten paragraphs in BM25 order, best first. Heads are
detected (every head scored, top 16 by nDCG@10) on questions 0-49 twice: with the chunks written as given
(``input``) and reversed (``reversed``, the adapters' default). Both sets and the shipped default
(``smollm2-135m-instruct-mix``, detected in the input layout on SciFact and HotpotQA 0-49) are then scored
on the held-out questions 50-99 in both layouts (one pass per question and layout, over the union of the
sets), with Recall@2 and paired randomization tests.

Run:  .venv/bin/python -m benchmarks run layout-heads --threads 1
"""

from __future__ import annotations

from typing import Any

from . import harness as H
from . import methods as M

LAYOUTS = ("input", "reversed")


def bm25_ordered(data_dir: Any) -> list[dict[str, Any]]:
    out = []
    for q in H.hotpot_questions(data_dir):
        plain = [f"{p['title']}. {p['paragraph_text']}" for p in q["paragraphs"]]
        scores = M.bm25_scores(q["question"], plain)
        order = sorted(range(len(plain)), key=lambda i, s=scores: (-s[i], i))
        paras = [q["paragraphs"][i] for i in order]
        out.append({"qid": q["idx"], "query": q["question"],
                    "chunks": [{"title": p["title"], "text": p["paragraph_text"]} for p in paras],
                    "ids": [str(p["idx"]) for p in paras],
                    "gold": {str(p["idx"]): 1 for p in paras if p["is_supporting"]}})
    return out


def main(argv: list[str] | None = None) -> None:
    p = H.common_parser(__doc__ or "")
    p.add_argument("--top-k", type=int, default=16)
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    from qr_integrations import HeadSet, QRScorer
    from qr_integrations.core.detection import DetectionExample, score_heads

    rows = bm25_ordered(args.data_dir)
    n = args.limit or 50
    detect_rows, eval_rows = rows[:n], rows[50:50 + n]
    examples = [DetectionExample(query=r["query"], chunks=tuple(r["chunks"]),
                                 relevance=tuple(float(r["gold"].get(i, 0)) for i in r["ids"]), id=r["qid"])
                for r in detect_rows]
    sets: dict[str, Any] = {}
    for layout in LAYOUTS:
        scorer = QRScorer(device="cpu", heads="all", layout=layout, num_threads=args.threads)
        ranking = score_heads(scorer, examples, "ndcg@10", show_progress=not args.no_progress)
        sets[f"detected in {layout}"] = ranking.head_set(args.top_k, name=f"hotpot-bm25-{layout}")
    sets["shipped default"] = HeadSet.named("smollm2-135m-instruct-mix")
    overlap = len(set(sets["detected in input"].heads) & set(sets["detected in reversed"].heads))

    qrels = {r["qid"]: r["gold"] for r in eval_rows}
    results: dict[str, dict[str, float]] = {}
    per_query: dict[str, dict[str, float]] = {}
    for layout in LAYOUTS:
        scorer = QRScorer(device="cpu", layout=layout, num_threads=args.threads)
        runs: dict[str, dict[str, dict[str, float]]] = {name: {} for name in sets}
        for r in H.progress(eval_rows, desc=f"held out, {layout}", disable=args.no_progress):
            scored = scorer.score_head_sets(r["query"], r["chunks"], list(sets.values()))
            for name, s in zip(sets, scored, strict=True):
                runs[name][r["qid"]] = H.ranking_to_run(r["ids"], s)
        for name in sets:
            mean, pq = H.evaluate(qrels, runs[name], ["recall@2"])
            results[f"{name} | scored in {layout}"] = {"recall@2": mean["recall@2"]}
            per_query[f"{name} | scored in {layout}"] = pq["recall@2"]

    def test(a: str, b: str) -> str:
        qids = sorted(per_query[a])
        t = H.paired_score_test([per_query[a][q] for q in qids], [per_query[b][q] for q in qids])
        w, ti, lo = t["wins_ties_losses"]
        return f"{t['mean_diff']:+.3f}, {H.format_p(t['p'])} (wins/ties/losses {w}/{ti}/{lo})"

    table_rows = [[name, *(results[f'{name} | scored in {lay}']['recall@2'] for lay in LAYOUTS)] for name in sets]
    table = H.markdown_table([f"head set ({args.top_k} heads)", "Recall@2, scored as given", "Recall@2, scored reversed"],
                             table_rows)
    tests = {
        "reversed: detected in reversed vs detected in input": test(
            "detected in reversed | scored in reversed", "detected in input | scored in reversed"),
        "reversed: detected in reversed vs shipped default": test(
            "detected in reversed | scored in reversed", "shipped default | scored in reversed"),
        "input: detected in input vs detected in reversed": test(
            "detected in input | scored in input", "detected in reversed | scored in input"),
    }
    table += f"\n\nHeads shared by the two detected sets: {overlap} of {args.top_k}.\n\n" + "\n".join(
        f"- {k}: {v}" for k, v in tests.items())
    bars = {lay: {name: results[f"{name} | scored in {lay}"]["recall@2"] for name in sets} for lay in LAYOUTS}
    H.publish("layout_heads_hotpotqa_smollm2", {"results": results, "tests": tests, "overlap": overlap,
                                                "sets": {k: v.to_string() for k, v in sets.items()}},
              table, bars, "Heads detected per layout, held-out HotpotQA 50-99 (BM25 order)", "Recall@2")
