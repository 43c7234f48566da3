"""HotpotQA evidence selection on all 100 questions, with QR heads detected by cross-fitting.

The shipped head sets were detected partly on HotpotQA questions 0-49, so ``hotpot_evidence`` scores them
on questions 50-99 only. This benchmark covers all 100 questions without scoring any question with heads
that saw it: the questions are split into ``--folds`` contiguous blocks; for each block, every head is
ranked by its mean nDCG@10 (the detection metric of ``benchmarks.detect_heads``) on the *other* blocks,
and the top ``--top-k`` heads score the block. BM25, dense all-MiniLM-L6-v2 and all heads are scored on
the same 100 questions, with paired randomization tests.

No extra model pass is needed beyond ``hotpot_evidence``'s: each question's per-head vectors come from its
cache (``benchmarks/.cache/vectors``), and are computed there when missing.

    .venv/bin/python -m benchmarks run hotpot-crossfit --model smollm2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import harness as H
from benchmarks import methods as M


def head_table(vectors: list[Any], qids: list[str], qrels: dict[str, dict[str, int]], std: float | None,
               hide: bool = False) -> np.ndarray:
    """nDCG@10 of every single head on every question: shape (questions, heads), heads in vector row order."""
    from qr_integrations.core.detection import ndcg_at_k
    from qr_integrations.core.heads import HeadSet

    heads = vectors[0].heads
    singles = [HeadSet(heads=(h,)) for h in heads]
    out = np.zeros((len(vectors), len(heads)))
    for i, (hv, qid) in enumerate(H.progress(list(zip(vectors, qids, strict=True)), desc="per-head nDCG", disable=hide)):
        rel = [1.0 if str(j) in qrels[qid] else 0.0 for j in range(hv.n_chunks)]
        for j, hs in enumerate(singles):
            out[i, j] = ndcg_at_k(hv.scores(hs, std), rel, k=10)
    return out


def crossfit_sets(per_head: np.ndarray, heads: Sequence[tuple[int, int]], folds: int, top_k: int,
                  tag: str = "model") -> list[tuple[np.ndarray, Any, np.ndarray]]:
    """For each contiguous block of questions: (its row indices, the head set detected without it, train means).

    A block's set holds the ``top_k`` heads by mean of ``per_head`` (questions x heads) over the other blocks'
    rows only, so no question is scored by heads chosen with its own labels.
    """
    from qr_integrations.core.heads import HeadSet

    n = per_head.shape[0]
    out = []
    for b, test in enumerate(np.array_split(np.arange(n), folds)):
        train = np.setdiff1d(np.arange(n), test)
        mean = per_head[train].mean(axis=0)
        top = np.argsort(-mean, kind="stable")[:top_k]
        out.append((test, HeadSet(heads=tuple(tuple(heads[j]) for j in top), name=f"{tag}-hotpotqa-fold{b}"), mean))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = H.common_parser(__doc__.splitlines()[0], limit=100)
    p.add_argument("--start", type=int, default=0, help="first question")
    p.add_argument("--folds", type=int, default=2, help="contiguous blocks; each is scored by heads detected on the others")
    p.add_argument("--top-k", type=int, default=16, help="heads per detected set (16, as the shipped sets)")
    args = p.parse_args(argv)
    if args.folds < 2:
        p.error("--folds must be at least 2: with one block the heads would be detected on the questions they score")
    H.setup_torch(args.threads)
    qs = H.hotpot_questions(args.data_dir, args.start, args.limit)
    qrels = H.hotpot_qrels(qs)
    qids = [q["idx"] for q in qs]
    tag = H.model_tag(args.model)
    name = args.out or f"hotpot_crossfit_{tag}"
    from qr_integrations import QRScorer
    from qr_integrations.core.heads import HeadSet

    scorer = QRScorer(H.resolve_model(args.model), device="cpu")
    qr = M.QRMethods(scorer, HeadSet.all(), H.CACHE_DIR / "vectors" / f"hotpot_{tag}")
    scores = M.hotpot_scores(qs, tag, qr, args.no_progress, H.Timer())  # fills the vector cache
    vectors = [qr.vectors(q["question"], H.paragraph_pairs(q), key=H.cache_key("qr", tag, q["idx"]))[0] for q in qs]
    std = scorer.config.outlier_std
    per_head = head_table(vectors, qids, qrels, std, args.no_progress)
    heads = vectors[0].heads

    scores["qrhead-cv"] = {}
    folds = []
    pos = {h: j for j, h in enumerate(heads)}
    sets = crossfit_sets(per_head, heads, args.folds, args.top_k, tag)
    for test, hs, mean in sets:
        for i in test:
            scores["qrhead-cv"][qids[i]] = vectors[i].scores(hs, std)
        folds.append({"test": f"{args.start + test[0]}-{args.start + test[-1]}", "n_test": len(test),
                      "n_train": len(qs) - len(test), "heads": [list(h) for h in hs.heads],
                      "train_ndcg@10": [round(float(mean[pos[h]]), 4) for h in hs.heads]})
    shipped = scorer.head_set
    overlap = [] if shipped.is_all else [
        len({tuple(h) for h in f["heads"]} & {tuple(h) for h in shipped.heads}) for f in folds]

    runs = {m: {qid: H.ranking_to_run([str(i) for i in range(len(s))], s) for qid, s in per.items()}
            for m, per in scores.items() if m != "qrhead"}
    names = {"bm25": "BM25", "dense": "dense all-MiniLM-L6-v2", "all-heads": "all heads (ICR-style)",
             "qrhead-cv": f"QRHead ({args.folds}-fold cross-fitted heads)"}
    label = f"{args.start}-{args.start + len(qs) - 1}"
    results, rows = [], []
    groups = [(label, qids)] + [(f["test"], [qids[i] for i in test]) for f, (test, _, _) in zip(folds, sets, strict=True)]
    for glabel, gids in groups:  # all questions, then each block (scored by the heads of the other blocks)
        for m in names:
            mean, _ = H.evaluate(qrels, {q: runs[m][q] for q in gids}, H.HOTPOT_METRICS)
            results.append({"questions": glabel, "n": len(gids), "method": m, **mean})
            rows.append([glabel, names[m], mean["recall@2"], mean["recall@5"]])
    tests = H.paired_tests(qrels, runs, "qrhead-cv", "recall@2")
    table = (f"HotpotQA distractor, questions {label}, 10 paragraphs each, model {tag}; QRHead: top {args.top_k} heads "
             f"by mean nDCG@10 on the other {args.folds - 1} block(s) of questions\n\n"
             + H.markdown_table(["questions", "method", "Recall@2", "Recall@5"], rows)
             + "\n\n" + H.describe_tests(tests, names, "QRHead", "Recall@2")
             + "\n\nHeads shared with the shipped default set, per test block: "
             + "; ".join(f"{f['test']}: {o} of {args.top_k}" for f, o in zip(folds, overlap, strict=False)))
    payload = {"settings": vars(args) | {"data_dir": str(args.data_dir)}, "folds": folds,
               "overlap_with_shipped_default": overlap, "results": results, "paired_tests_recall@2": tests}
    bars = {m: {names[r["method"]]: r[m] for r in results if r["questions"] == label} for m in H.HOTPOT_METRICS}
    return H.publish(name, payload, table, bars, f"HotpotQA recall, {tag}, questions {label}, cross-fitted heads", "recall")
