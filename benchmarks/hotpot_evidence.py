"""Multi-hop evidence selection on HotpotQA: recall@2 and @5 of the two supporting paragraphs among ten.

Methods: BM25 (bm25s over the question's ten paragraphs), dense all-MiniLM-L6-v2, all heads (ICR-style),
QRHead, and LlamaIndex ``RankGPTRerank`` / ``LLMRerank`` on the same local model (first ``--llm-limit``).
Paragraphs are given in the dataset's order. By default questions 50-99 are evaluated: the heads shipped
for the embedded models were detected on questions 0-49, never on the ones evaluated here.

    .venv/bin/python -m benchmarks run hotpot-evidence --model smollm2 --start 50 --limit 50
"""

from __future__ import annotations

import time

from benchmarks import harness as H
from benchmarks import methods as M

METRICS = H.HOTPOT_METRICS


def main(argv: list[str] | None = None) -> dict:
    p = H.common_parser(__doc__.splitlines()[0], limit=50)
    p.add_argument("--start", type=int, default=50, help="first question (0-49 were used for head detection)")
    p.add_argument("--llm-limit", type=int, default=10, help="questions for RankGPT/LLMRerank (0: skip)")
    p.add_argument("--qr-only-latency", type=int, default=5, help="time QRHead alone on this many questions")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    qs = H.hotpot_questions(args.data_dir, args.start, args.limit)
    qrels = H.hotpot_qrels(qs)
    tag = H.model_tag(args.model)
    name = args.out or f"hotpot_evidence_{tag}"
    from qr_integrations import QRScorer

    scorer = QRScorer(H.resolve_model(args.model), device="cpu")
    qr_heads, heads_note = H.pick_heads(scorer, args.heads)
    qr = M.QRMethods(scorer, qr_heads, H.CACHE_DIR / "vectors" / f"hotpot_{tag}")
    hs_str = H.head_set_string(qr_heads)
    timer = H.Timer()
    scores = M.hotpot_scores(qs, tag, qr, args.no_progress, timer)
    if not qr.same and args.qr_only_latency:  # QRHead alone stops at its deepest layer: time it on its own
        only = QRScorer(H.resolve_model(args.model), heads=qr_heads, device="cpu")
        for q in qs[: args.qr_only_latency]:
            t0 = time.perf_counter()
            only.score(q["question"], H.paragraph_pairs(q))
            timer.add("qrhead alone", time.perf_counter() - t0)
    runs = {m: {qid: H.ranking_to_run([str(i) for i in range(len(s))], s) for qid, s in per.items()}
            for m, per in scores.items()}

    cache = H.JsonlCache(H.CACHE_DIR / f"hotpot_{tag}.jsonl")
    llm_qs = qs[: args.llm_limit] if args.llm_limit else []
    parse: dict[str, list[dict]] = {"rankgpt": [], "llmrerank": []}
    if llm_qs:
        llm_runs, parse = M.llm_rerank_runs(
            [(q["idx"], q["question"], [str(i) for i in range(len(q["paragraphs"]))], H.paragraph_texts(q)) for q in llm_qs],
            cache, lambda m, qid: H.cache_key(m, tag, qid), scorer, 100, timer, f"LLM rerankers {tag}", args.no_progress)
        runs.update(llm_runs)

    lat = timer.summary()
    lat_key = {"bm25": "bm25", "dense": "dense", "all-heads": "all-heads + qrhead (one pass)",
               "qrhead": "qrhead alone" if "qrhead alone" in lat else "all-heads + qrhead (one pass)",
               "rankgpt": "rankgpt", "llmrerank": "llmrerank"}
    names = {"bm25": "BM25", "dense": "dense all-MiniLM-L6-v2", "all-heads": "all heads (ICR-style)",
             "qrhead": H.qrhead_label(qr_heads, args.heads), "rankgpt": "RankGPTRerank (LlamaIndex)",
             "llmrerank": "LLMRerank (LlamaIndex)"}
    results, rows = [], []
    qids = [q["idx"] for q in qs]
    groups = [(f"{args.start}-{args.start + len(qs) - 1}", qids, ["bm25", "dense", "all-heads", "qrhead"])]
    if llm_qs:
        groups.append((f"{args.start}-{args.start + len(llm_qs) - 1}", [q["idx"] for q in llm_qs],
                       ["bm25", "dense", "all-heads", "qrhead", "rankgpt", "llmrerank"]))
    for label, qset, ms in groups:
        for m in ms:
            mean, _ = H.evaluate(qrels, {q: runs[m][q] for q in qset}, METRICS)
            la = lat.get(lat_key[m], {})
            results.append({"questions": label, "n": len(qset), "method": m, **mean, "latency": la})
            rows.append([label, names[m], mean["recall@2"], mean["recall@5"], la.get("median_s", float("nan")),
                         la.get("p90_s", float("nan"))])
    parse_summary = {}
    for m, infos in parse.items():
        if infos:
            key = "named" if m == "rankgpt" else "chosen"
            parse_summary[m] = {"questions": len(infos), "no_usable_answer": sum(1 for i in infos if i.get(key, 0) == 0),
                                "examples": [i.get("output") or i.get("outputs") for i in infos[:3]]}
    table = (f"HotpotQA distractor, questions {args.start}-{args.start + len(qs) - 1}, 10 paragraphs each, model {tag}; "
             f"QRHead heads: {heads_note}\n\n"
             + H.markdown_table(["questions", "method", "Recall@2", "Recall@5", "median s/q", "p90 s/q"], rows))
    if parse_summary:
        table += "\n\nLLM re-ranker answers: " + "; ".join(
            f"{m}: {s['no_usable_answer']}/{s['questions']} questions with no usable ranking in the answer"
            for m, s in parse_summary.items())
    tests = H.paired_tests(qrels, {m: {q: runs[m][q] for q in qids} for m in ("bm25", "dense", "all-heads", "qrhead")},
                           "qrhead", "recall@2")
    table += "\n\n" + H.describe_tests(tests, names, "QRHead", "Recall@2")
    payload = {"settings": vars(args) | {"data_dir": str(args.data_dir)}, "heads": hs_str, "heads_note": heads_note,
               "results": results, "latency": lat, "llm_parse": parse_summary, "paired_tests_recall@2": tests}
    first = results[0]["questions"]
    groups = {m: {names[r["method"]]: r[m] for r in results if r["questions"] == first} for m in METRICS}
    return H.publish(name, payload, table, groups, f"HotpotQA supporting-paragraph recall, {tag}, questions {first}",
                     "recall")
