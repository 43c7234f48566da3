"""Chunk-order effects (issue #5): how much the position of a chunk in the prompt moves its score and rank.

An LLM reads the chunks in order, so the same chunk scores differently at different places. Two measures:

* **hand-written questions** (the five of ``tests/conftest.py``, four chunks each): the gold chunk is put
  at every position (the others keep their order); we record its rank and score at each position;
* **SciFact** (BEIR test queries with a relevant document in the BM25 top ``--k``): the same ``--k``
  candidates are scored in BM25 order, reversed order and ``--shuffles`` seeded random orders. Reported:
  nDCG@10 of each order, how often the top-1 document changes against BM25 order, the Spearman
  correlation of a query's document scores between two orders, the mean absolute rank change of a
  document, and the mean within-query z-scored score by prompt position (the position bias itself).

Run:  .venv/bin/python -m benchmarks run position-effects --threads 1 --limit 20 --k 10 --words 100
"""

from __future__ import annotations

import importlib.util
import math
import random
from itertools import combinations
from typing import Any

import numpy as np

from . import harness as H


def ndcg_at_10(ranked_ids: list[str], qrels: dict[str, int]) -> float:
    gains = [qrels.get(d, 0) for d in ranked_ids[:10]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(qrels.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def ranks_of(scores: list[float]) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    out = [0] * len(scores)
    for r, i in enumerate(order):
        out[i] = r + 1
    return out


def hand_written(scorer: Any) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("qr_tests_conftest", H.REPO_ROOT / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = []
    for query, chunks, gold in module.QUESTIONS:
        others = [c for i, c in enumerate(chunks) if i != gold]
        per_pos = []
        for pos in range(len(chunks)):
            order = [*others[:pos], chunks[gold], *others[pos:]]
            scores = scorer.score(query, order)
            per_pos.append({"position": pos + 1, "gold_rank": ranks_of(scores)[pos], "gold_score": scores[pos],
                            "margin_over_best_other": scores[pos] - max(s for i, s in enumerate(scores) if i != pos)})
        rows.append({"query": query, "positions": per_pos})
    return {"questions": rows}


def scifact(scorer: Any, args: Any) -> dict[str, Any]:
    beir, cands = H.scifact_test(args.data_dir)
    qids = [q for q in cands if q in beir.qrels and any(d in beir.qrels[q] for d, _ in cands[q][: args.k])]
    qids = qids[: args.limit]
    rng = random.Random(args.seed)
    orders = {"bm25": None, "reversed": None, **{f"shuffle{s + 1}": None for s in range(args.shuffles)}}
    per_query = []
    for qid in H.progress(qids, desc="scifact orders", disable=args.no_progress):
        ids = [d for d, _ in cands[qid][: args.k]]
        chunks = [(beir.corpus[d][0], H.cut_words(beir.corpus[d][1], args.words)) for d in ids]
        n = len(ids)
        perms = {"bm25": list(range(n)), "reversed": list(range(n))[::-1]}
        for name in orders:
            if name.startswith("shuffle"):
                perm = list(range(n))
                rng.shuffle(perm)
                perms[name] = perm
        scores_by_order: dict[str, list[float]] = {}
        for name, perm in perms.items():
            s = scorer.score(beir.queries[qid], [chunks[i] for i in perm])
            doc_scores = [0.0] * n
            for pos, i in enumerate(perm):
                doc_scores[i] = s[pos]
            scores_by_order[name] = doc_scores
        per_query.append({"qid": qid, "ids": ids, "perms": perms, "scores": scores_by_order})

    names = list(orders)
    ndcg = {name: float(np.mean([ndcg_at_10([q["ids"][i] for i in sorted(range(len(q["ids"])), key=lambda i, q=q,
                                                                             name=name: (-q["scores"][name][i], i))],
                                            beir.qrels[q["qid"]]) for q in per_query])) for name in names}
    top1_changes = {name: float(np.mean([ranks_of(q["scores"][name]).index(1) != ranks_of(q["scores"]["bm25"]).index(1)
                                         for q in per_query])) for name in names if name != "bm25"}
    pairs = list(combinations(names, 2))
    rho = float(np.mean([spearman(q["scores"][a], q["scores"][b]) for q in per_query for a, b in pairs]))
    rank_moves = float(np.mean([abs(ra - rb) for q in per_query for a, b in pairs
                                for ra, rb in zip(ranks_of(q["scores"][a]), ranks_of(q["scores"][b]), strict=True)]))
    gold_moves = []
    for q in per_query:
        gold = [i for i, d in enumerate(q["ids"]) if beir.qrels[q["qid"]].get(d, 0) > 0]
        ranks = {name: ranks_of(q["scores"][name]) for name in names}
        gold_moves += [max(ranks[name][g] for name in names) - min(ranks[name][g] for name in names) for g in gold]
    # position bias: z-score each order's scores within the query, average by prompt position
    by_pos: list[list[float]] = [[] for _ in range(args.k)]
    for q in per_query:
        for name in names:
            s = np.asarray(q["scores"][name])
            z = (s - s.mean()) / (s.std() or 1.0)
            for pos, i in enumerate(q["perms"][name]):
                by_pos[pos].append(float(z[i]))
    return {
        "queries": len(per_query),
        "k": args.k,
        "words": args.words,
        "orders": names,
        "ndcg@10": ndcg,
        "top1_changed_vs_bm25_order": top1_changes,
        "mean_spearman_between_orders": rho,
        "mean_abs_rank_change_between_orders": rank_moves,
        "gold_rank_spread": {"mean": float(np.mean(gold_moves)), "max": int(max(gold_moves)), "n": len(gold_moves)},
        "mean_z_score_by_position": [round(float(np.mean(v)), 3) for v in by_pos if v],
        "per_query": per_query,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = H.common_parser(__doc__.splitlines()[0] if __doc__ else "", limit=20)
    p.add_argument("--k", type=int, default=10, help="BM25 candidates per query")
    p.add_argument("--words", type=int, default=100, help="cut each candidate's text to this many words")
    p.add_argument("--shuffles", type=int, default=2)
    p.add_argument("--seed", type=int, default=13)
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    from qr_integrations import QRScorer

    scorer = QRScorer(H.resolve_model(args.model), device="cpu", heads=args.heads)
    heads = "all" if scorer.head_set.is_all else scorer.head_set.to_string()
    hand = hand_written(scorer)
    sci = scifact(scorer, args)

    hand_rows = []
    for q in hand["questions"]:
        ranks = [p["gold_rank"] for p in q["positions"]]
        scores = [p["gold_score"] for p in q["positions"]]
        hand_rows.append([q["query"], " ".join(map(str, ranks)), min(scores), max(scores),
                          max(scores) - min(scores), min(p["margin_over_best_other"] for p in q["positions"])])
    table = "Hand-written questions, gold chunk moved through positions 1-4:\n\n" + H.markdown_table(
        ["query", "gold rank at pos 1 2 3 4", "min score", "max score", "spread", "min margin"], hand_rows)
    sci_rows = [[name, sci["ndcg@10"][name], sci["top1_changed_vs_bm25_order"].get(name, float("nan"))]
                for name in sci["orders"]]
    table += (f"\n\nSciFact, {sci['queries']} test queries, BM25 top-{sci['k']} cut to {sci['words']} words, "
              f"head set: {heads}:\n\n" + H.markdown_table(["candidate order", "nDCG@10", "top-1 differs from BM25 order"],
                                                           sci_rows))
    table += (f"\n\nMean Spearman of a query's document scores between two orders: {sci['mean_spearman_between_orders']:.3f}; "
              f"mean |rank change| of a document: {sci['mean_abs_rank_change_between_orders']:.2f} of {sci['k']}; "
              f"gold document's rank spread over orders: mean {sci['gold_rank_spread']['mean']:.2f}, "
              f"max {sci['gold_rank_spread']['max']}.\n\nMean within-query z-score by prompt position (1 = first, "
              f"{sci['k']} = next to the query): " + ", ".join(f"{v:+.2f}" for v in sci["mean_z_score_by_position"]))
    H.write_results(args.out or "position_effects", {"settings": vars(args), "head_set": heads, "hand_written": hand,
                                                     "scifact": sci}, table)
    print(table)
    return {"hand_written": hand, "scifact": sci}
