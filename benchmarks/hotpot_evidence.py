"""Multi-hop evidence selection on HotpotQA: recall@2 and @5 of the two supporting paragraphs among ten.

Methods: BM25 (bm25s over the question's ten paragraphs), dense all-MiniLM-L6-v2, all heads (ICR-style),
QRHead, and LlamaIndex ``RankGPTRerank`` / ``LLMRerank`` on the same local model (first ``--llm-limit``).
Paragraphs are given in the dataset's order. By default questions 50-99 are evaluated: the heads shipped
for the embedded models were detected on questions 0-49, never on the ones evaluated here.

    .venv/bin/python -m benchmarks.hotpot_evidence --model smollm2 --start 50 --limit 50
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import harness as H
from benchmarks import methods as M

METRICS = ["recall@2", "recall@5"]
DATA_FILE = "hotpotqa/hotpotqa_train_100.paragraphs.json"


def questions(data_dir: Any, start: int, limit: int | None) -> list[dict]:
    qs = H.load_hotpot(H.resolve_data_dir(data_dir) / DATA_FILE)
    return qs[start: start + limit if limit else None]


def qrels_of(qs: list[dict]) -> dict[str, dict[str, int]]:
    return {q["idx"]: {str(p["idx"]): 1 for p in q["paragraphs"] if p["is_supporting"]} for q in qs}


def paragraph_pairs(q: dict) -> list[tuple[str, str]]:
    return [(p["title"], p["paragraph_text"]) for p in q["paragraphs"]]


def paragraph_texts(q: dict) -> list[str]:
    return [f"{p['title']}. {p['paragraph_text']}" for p in q["paragraphs"]]


def method_scores(qs: list[dict], tag: str, qr: M.QRMethods, hide: bool,
                  timer: H.Timer, want_dense: bool = True) -> dict[str, dict[str, list[float]]]:
    """BM25, dense, all-heads and QRHead scores per question id (cached on disk)."""
    cache = H.JsonlCache(H.CACHE_DIR / f"hotpot_{tag}.jsonl")
    out: dict[str, dict[str, list[float]]] = {"bm25": {}, "dense": {}, "all-heads": {}, "qrhead": {}}
    dense = M.Dense() if want_dense else None
    for q in H.progress(qs, desc=f"hotpot {tag}", disable=hide):
        qid, texts = q["idx"], paragraph_texts(q)
        t0 = time.perf_counter()
        out["bm25"][qid] = M.bm25_scores(q["question"], texts)
        timer.add("bm25", time.perf_counter() - t0)
        if dense is not None:
            key = H.cache_key("dense", qid)
            out["dense"][qid], sec = cache.timed(key, lambda q=q, t=texts: dense.scores(q["question"], t))
            timer.add("dense", sec)
        key = H.cache_key("qr", tag, qid)
        hit = cache.get(key)
        s, seconds = qr.scores(q["question"], paragraph_pairs(q), key=key)
        if hit is None:
            hit = {"seconds": seconds}
            cache.put(key, hit)
        hit["scores"] = s
        if hit.get("seconds") is not None:
            timer.add("all-heads + qrhead (one pass)", hit["seconds"])
        out["all-heads"][qid] = hit["scores"]["all-heads"]
        out["qrhead"][qid] = hit["scores"]["qrhead"]
    return out


def main(argv: list[str] | None = None) -> dict:
    p = H.common_parser(__doc__.splitlines()[0], limit=50)
    p.add_argument("--start", type=int, default=50, help="first question (0-49 were used for head detection)")
    p.add_argument("--llm-limit", type=int, default=10, help="questions for RankGPT/LLMRerank (0: skip)")
    p.add_argument("--qr-only-latency", type=int, default=5, help="time QRHead alone on this many questions")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    qs = questions(args.data_dir, args.start, args.limit)
    qrels = qrels_of(qs)
    tag = H.model_tag(args.model)
    name = args.out or f"hotpot_evidence_{tag}"
    from qr_integrations import QRScorer

    scorer = QRScorer(H.resolve_model(args.model), device="cpu")
    qr_heads, heads_note = H.pick_heads(scorer, args.heads)
    qr = M.QRMethods(scorer, qr_heads, H.CACHE_DIR / "vectors" / f"hotpot_{tag}")
    hs_str = H.head_set_string(qr_heads)
    timer = H.Timer()
    scores = method_scores(qs, tag, qr, args.no_progress, timer)
    if not qr.same and args.qr_only_latency:  # QRHead alone stops at its deepest layer: time it on its own
        only = QRScorer(H.resolve_model(args.model), heads=qr_heads, device="cpu")
        for q in qs[: args.qr_only_latency]:
            t0 = time.perf_counter()
            only.score(q["question"], paragraph_pairs(q))
            timer.add("qrhead alone", time.perf_counter() - t0)
    runs = {m: {qid: H.ranking_to_run([str(i) for i in range(len(s))], s) for qid, s in per.items()}
            for m, per in scores.items()}

    cache = H.JsonlCache(H.CACHE_DIR / f"hotpot_{tag}.jsonl")
    llm_qs = qs[: args.llm_limit] if args.llm_limit else []
    parse: dict[str, list[dict]] = {"rankgpt": [], "llmrerank": []}
    if llm_qs:
        llm = None
        runs["rankgpt"], runs["llmrerank"] = {}, {}
        for q in H.progress(llm_qs, desc=f"LLM rerankers {tag}", disable=args.no_progress):
            texts = paragraph_texts(q)
            for m, fn in (("rankgpt", M.rankgpt_order), ("llmrerank", M.llmrerank_order)):
                key = H.cache_key(m, tag, q["idx"])
                hit = cache.get(key)
                if hit is None:
                    if llm is None:
                        llm = M.local_llm(scorer, max_new_tokens=100)
                    t0 = time.perf_counter()
                    order, info = fn(llm, q["question"], texts)
                    hit = {"order": order, "info": info, "seconds": time.perf_counter() - t0}
                    cache.put(key, hit)
                if hit.get("seconds") is not None:  # timings taken under a disturbed machine are dropped from the cache
                    timer.add(m, hit["seconds"])
                parse[m].append(hit["info"])
                runs[m][q["idx"]] = H.ranking_to_run([str(i) for i in range(len(texts))],
                                                     H.order_to_scores(hit["order"], len(texts)))

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


if __name__ == "__main__":
    main()
