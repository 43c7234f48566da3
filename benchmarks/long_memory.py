"""A long multi-session history asked many questions: prepared once, then each question scored and trimmed.

The history is built from the HotpotQA paragraphs of ``--questions`` consecutive questions (from
``--start``), shuffled with a fixed seed and written as chat-like sessions ("Session 17. <title>: <text>"),
one chunk per session. Every question is then asked of the whole history, as an assistant with a long
memory would: ``ctx.score`` (the ranking) and ``ctx.trim`` (the sessions kept under ``--budget`` tokens)
on one prepared context, against one plain ``scorer.score`` call over the same history (what a question
costs without reuse; ``--separate`` such calls are timed, the median stands for each).

Reported: preparation, the time per question (score, and trim) against a plain call, the total for all
questions against as many plain calls, and, as a check that the trimmed memory still holds the evidence,
Recall@2/@5 of the gold sessions and how often the trim kept both (with BM25 over the same sessions for
comparison). One process, ``--threads`` torch threads. Quality across long contexts is issue #15's
benchmark (``benchmarks.long_context``); this one is about cost.

Run:  .venv/bin/python -m benchmarks run long-memory --questions 20 --threads 1
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from . import harness as H
from . import methods as M


def build_history(qs: list[dict[str, Any]], seed: int = 0) -> tuple[list[str], list[set[int]]]:
    """Sessions (chunks) and, per question, the indices of its two gold sessions."""
    paras = [(qi, p) for qi, q in enumerate(qs) for p in q["paragraphs"]]
    random.Random(seed).shuffle(paras)
    chunks = [f"Session {i + 1}. {p['title']}: {p['paragraph_text']}" for i, (_, p) in enumerate(paras)]
    gold: list[set[int]] = [set() for _ in qs]
    for i, (qi, p) in enumerate(paras):
        if p["is_supporting"]:
            gold[qi].add(i)
    return chunks, gold


def recall(order: list[int], gold: set[int], k: int) -> float:
    return len(set(order[:k]) & gold) / len(gold)


def main(argv: list[str] | None = None) -> None:
    p = H.common_parser(__doc__.splitlines()[0])
    p.add_argument("--start", type=int, default=50, help="first HotpotQA question (0-49 saw head detection)")
    p.add_argument("--questions", type=int, default=20, help="questions whose paragraphs make the history")
    p.add_argument("--budget", type=int, default=1024, help="trim budget in tokens")
    p.add_argument("--separate", type=int, default=1, help="plain calls timed for comparison")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    from qr_integrations import QRScorer

    qs = H.hotpot_questions(args.data_dir, args.start, args.questions)
    chunks, gold = build_history(qs)
    scorer = QRScorer(device="cpu", num_threads=args.threads, **H.scorer_options(args))
    scorer.score("warm up", ["one", "two"])
    tokens = sum(scorer.count_tokens(c) for c in chunks)
    steps = 1 + 2 * len(qs) + args.separate
    bar = H.progress(range(steps), total=steps, desc="long memory", disable=args.no_progress)
    tick = iter(bar)
    t0 = time.perf_counter()
    ctx = scorer.context(chunks)
    prepare = time.perf_counter() - t0
    next(tick, None)
    score_s, trim_s, rows = [], [], []
    for q, g in zip(qs, gold, strict=True):
        t0 = time.perf_counter()
        s = ctx.score(q["question"])
        score_s.append(time.perf_counter() - t0)
        next(tick, None)
        t0 = time.perf_counter()
        kept = ctx.trim(q["question"], max_tokens=args.budget)
        trim_s.append(time.perf_counter() - t0)
        next(tick, None)
        order = sorted(range(len(s)), key=lambda i, s=s: (-s[i], i))
        bm = M.bm25_scores(q["question"], chunks)
        bm_order = sorted(range(len(bm)), key=lambda i, b=bm: (-b[i], i))
        kept_ids = set(kept.indices)
        rows.append({"qid": q["idx"], "qr_r2": recall(order, g, 2), "qr_r5": recall(order, g, 5),
                     "bm25_r2": recall(bm_order, g, 2), "bm25_r5": recall(bm_order, g, 5),
                     "trim_kept_both": float(g <= kept_ids), "trim_chunks": len(kept_ids)})
    separate = []
    for q in qs[: args.separate]:
        t0 = time.perf_counter()
        scorer.score(q["question"], chunks)
        separate.append(time.perf_counter() - t0)
        next(tick, None)
    bar.close()
    full = statistics.median(separate)
    n = len(qs)
    total_ctx = prepare + sum(score_s) + sum(trim_s)
    mean = {k: statistics.fmean(r[k] for r in rows) for k in rows[0] if k != "qid"}
    cost = H.markdown_table(
        ["sessions", "tokens", "windows", "context MiB", "prepare s", "plain call s", "question: score s (median)",
         "question: trim s (median)", "score / plain call", f"{n} questions scored + trimmed, s",
         f"{n} plain calls, s", "ratio"],
        [[len(chunks), tokens, ctx.num_windows, ctx.nbytes / 2**20, prepare, full, statistics.median(score_s),
          statistics.median(trim_s), statistics.median(score_s) / full, total_ctx, n * full, total_ctx / (n * full)]])
    quality = H.markdown_table(
        ["questions", "QRHead R@2", "BM25 R@2", "QRHead R@5", "BM25 R@5", f"trim ({args.budget} tokens) kept both gold",
         "sessions kept (mean)"],
        [[n, mean["qr_r2"], mean["bm25_r2"], mean["qr_r5"], mean["bm25_r5"], mean["trim_kept_both"],
          mean["trim_chunks"]]])
    ctx.close()
    H.write_results("long_memory", {"rows": rows, "prepare_s": prepare, "score_s": score_s, "trim_s": trim_s,
                                    "separate_s": separate, "tokens": tokens, "threads": args.threads},
                    cost + "\n\n" + quality)
    print(cost)
    print(quality)
