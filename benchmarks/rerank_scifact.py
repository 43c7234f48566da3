"""Re-ranking BEIR SciFact: BM25 top-k candidates re-ranked by QRHead and its peers.

Methods: BM25 order; dense all-MiniLM-L6-v2; all-heads scoring (ICR-style) and QRHead (one forward pass
for both); LlamaIndex ``RankGPTRerank`` and ``LLMRerank`` driven by the same local model (on the first
``--llm-limit`` queries, they generate and are slow). nDCG@10 and Recall@10 with ranx, per-query latency.

Candidates are cut to ``--words`` words and, for the attention scorers, given in reversed BM25 order
(best candidates last, nearest the query) as in QRHead's evaluation; ``--order bm25`` gives them best first.

    .venv/bin/python -m benchmarks run rerank-scifact --model smollm2 --limit 100 --k 20 --words 150
"""

from __future__ import annotations

import time

from benchmarks import harness as H
from benchmarks import methods as M

METRICS = ["ndcg@10", "recall@10"]


def main(argv: list[str] | None = None) -> dict:
    p = H.common_parser(__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=20, help="BM25 candidates per query (20 for the CPU, up to 100)")
    p.add_argument("--words", type=int, default=150, help="cut each candidate (title + text) to this many words")
    p.add_argument("--order", choices=["reversed", "bm25"], default="reversed", help="candidate order in the prompt")
    p.add_argument("--llm-limit", type=int, default=10, help="queries for RankGPT/LLMRerank (0: skip them)")
    p.add_argument("--qr-only-latency", type=int, default=10,
                   help="also time QRHead alone (early exit at its deepest layer) on this many queries")
    p.add_argument("--max-context-tokens", type=int, default=None)
    p.add_argument("--dense-all", action="store_true", help="also run dense on every test query, not only --limit")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    beir, cands = H.scifact_test(args.data_dir)
    qids = [q for q in cands if q in beir.qrels]
    subset = qids[: args.limit] if args.limit else qids
    tag = H.model_tag(args.model)
    name = args.out or f"scifact_rerank_{tag}_{args.order}_k{args.k}"
    cache = H.JsonlCache(H.CACHE_DIR / f"scifact_{tag}.jsonl")
    hide = args.no_progress

    def docs_of(qid: str) -> tuple[list[str], list[tuple[str, str]], list[str]]:
        ids = [d for d, _ in cands[qid][: args.k]]
        pairs = [(beir.corpus[d][0], H.cut_words(beir.corpus[d][1], args.words)) for d in ids]
        # title + text, cut together, for the methods that read one string
        texts = [H.cut_words(f"{t}. {x}" if t else x, args.words) for t, x in pairs]
        return ids, pairs, texts

    timer = H.Timer()
    runs: dict[str, dict[str, dict[str, float]]] = {m: {} for m in ["bm25", "dense"]}

    # -- BM25 order and dense on every test query (cheap), timed per query
    for qid in qids:
        ids = [d for d, _ in cands[qid][: args.k]]
        t0 = time.perf_counter()
        runs["bm25"][qid] = H.ranking_to_run(ids, [s for _, s in cands[qid][: args.k]])
        timer.add("bm25", time.perf_counter() - t0)
    dense = M.Dense()
    for qid in H.progress(qids if args.dense_all else subset, desc="dense", disable=hide):
        ids, _, texts = docs_of(qid)
        key = H.cache_key("dense", args.k, args.words, qid)
        scores, sec = cache.timed(key, lambda q=qid, t=texts: dense.scores(beir.queries[q], t))
        timer.add("dense", sec)
        runs["dense"][qid] = H.ranking_to_run(ids, scores)

    # -- attention scorers
    from qr_integrations import QRScorer

    opts = {"max_context_tokens": args.max_context_tokens} if args.max_context_tokens else {}
    scorer = QRScorer(H.resolve_model(args.model), device="cpu", **opts)
    qr_heads, heads_note = H.pick_heads(scorer, args.heads)
    qr = M.QRMethods(scorer, qr_heads, H.CACHE_DIR / "vectors" / f"scifact_{tag}")
    hs_str = H.head_set_string(qr_heads)
    runs["all-heads"], runs["qrhead"] = {}, {}
    for qid in H.progress(subset, desc=f"QR {tag}", disable=hide):
        ids, pairs, _ = docs_of(qid)
        order = list(range(len(ids)))[::-1] if args.order == "reversed" else list(range(len(ids)))
        key = H.cache_key("qr", tag, args.k, args.words, args.order, args.max_context_tokens, qid)
        hit = cache.get(key)
        out, seconds = qr.scores(beir.queries[qid], [pairs[i] for i in order], key=key)
        if hit is None:
            hit = {"seconds": seconds, "load": H.environment()["load_average"]}
            cache.put(key, hit)
        hit["scores"] = out
        if hit.get("seconds") is not None:
            timer.add("all-heads + qrhead (one pass)", hit["seconds"])
        for m in ("all-heads", "qrhead"):
            back = [0.0] * len(ids)
            for pos, i in enumerate(order):
                back[i] = hit["scores"][m][pos]
            runs[m][qid] = H.ranking_to_run(ids, back)
    if not qr.same and args.qr_only_latency:
        only = QRScorer(H.resolve_model(args.model), heads=qr_heads, device="cpu", **opts)
        for qid in subset[: args.qr_only_latency]:
            _, pairs, _ = docs_of(qid)
            t0 = time.perf_counter()
            only.score(beir.queries[qid], pairs[::-1])
            timer.add("qrhead alone", time.perf_counter() - t0)

    # -- LLM re-rankers through LlamaIndex, same local model
    llm_subset = subset[: args.llm_limit] if args.llm_limit else []
    parse: dict[str, list[dict]] = {"rankgpt": [], "llmrerank": []}
    if llm_subset:
        llm_runs, parse = M.llm_rerank_runs(
            [(qid, beir.queries[qid], ids, texts) for qid in llm_subset for ids, _, texts in [docs_of(qid)]], cache,
            lambda m, qid: H.cache_key(m, tag, args.k, args.words, qid), scorer, 160, timer, f"LLM rerankers {tag}", hide)
        runs.update(llm_runs)

    # -- metrics
    results = []
    lat = timer.summary()
    lat_key = {"bm25": "bm25", "dense": "dense", "all-heads": "all-heads + qrhead (one pass)",
               "qrhead": "qrhead alone" if "qrhead alone" in lat else "all-heads + qrhead (one pass)",
               "rankgpt": "rankgpt", "llmrerank": "llmrerank"}

    def add_rows(label: str, qset: list[str], methods: list[str]) -> None:
        for m in methods:
            if m not in runs or not all(q in runs[m] for q in qset):
                continue
            mean, _ = H.evaluate(beir.qrels, {q: runs[m][q] for q in qset}, METRICS)
            results.append({"queries": label, "n": len(qset), "method": m, **mean, "latency": lat.get(lat_key[m])})

    add_rows("all test", qids, ["bm25", "dense"] if args.dense_all else ["bm25"])
    add_rows(f"first {len(subset)}", subset, ["bm25", "dense", "all-heads", "qrhead"])
    if llm_subset:
        add_rows(f"first {len(llm_subset)}", llm_subset, ["bm25", "dense", "all-heads", "qrhead", "rankgpt", "llmrerank"])

    parse_summary = {}
    for m, infos in parse.items():
        if infos:
            key = "named" if m == "rankgpt" else "chosen"
            parse_summary[m] = {
                "queries": len(infos),
                "no_usable_answer": sum(1 for i in infos if i.get(key, 0) == 0),
                f"mean_{key}": sum(i.get(key, 0) for i in infos) / len(infos),
                "errors": sum(i.get("errors", 0) for i in infos),
                "examples": [i.get("output") or i.get("outputs") for i in infos[:3]],
            }
    names = {"bm25": "BM25 order", "dense": "dense all-MiniLM-L6-v2", "all-heads": "all heads (ICR-style)",
             "qrhead": H.qrhead_label(qr_heads, args.heads), "rankgpt": "RankGPTRerank (LlamaIndex)",
             "llmrerank": "LLMRerank (LlamaIndex)"}
    rows = []
    for r in results:
        la = r["latency"] or {}
        rows.append([r["queries"], names[r["method"]], r["ndcg@10"], r["recall@10"], la.get("median_s", float("nan")),
                     la.get("p90_s", float("nan"))])
    table = (f"SciFact test, BM25 top-{args.k}, passages cut to {args.words} words, order: {args.order}; "
             f"model {tag}; QRHead heads: {heads_note}\n\n"
             + H.markdown_table(["queries", "method", "nDCG@10", "Recall@10", "median s/query", "p90 s/query"], rows))
    if parse_summary:
        table += "\n\nLLM re-ranker answers: " + "; ".join(
            f"{m}: {s['no_usable_answer']}/{s['queries']} queries with no usable ranking in the answer" for m, s in parse_summary.items())
    tests = H.paired_tests(beir.qrels, {m: {q: runs[m][q] for q in subset} for m in ("bm25", "dense", "all-heads", "qrhead")},
                           "qrhead", "ndcg@10")
    table += "\n\n" + H.describe_tests(tests, names, "QRHead", "nDCG@10")
    payload = {"settings": vars(args) | {"data_dir": str(args.data_dir)}, "heads": hs_str, "heads_note": heads_note,
               "results": results, "latency": lat, "llm_parse": parse_summary, "paired_tests_ndcg@10": tests}
    sized = [r for r in results if r["method"] == "qrhead"]
    last = max(sized, key=lambda r: r["n"])["queries"] if sized else results[-1]["queries"]  # the largest QR group
    groups = {m: {names[r["method"]]: r[m] for r in results if r["queries"] == last} for m in METRICS}
    return H.publish(name, payload, table, groups, f"SciFact re-ranking, {tag}, {last} test queries, BM25 top-{args.k}",
                     "score")
