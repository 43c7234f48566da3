"""Many questions over one context: a prepared context against separate calls (issue #12).

For each context length (tokens of chunk text, built from varied synthetic "session notes") and each
number of questions, in one process and one torch thread:

* ``separate``: ``scorer.score(question, chunks)`` per question: prefix pass, null tail and query tail
  every time. Each call does the same work whatever the question, so ``--separate`` calls are timed (half
  before the prepared run, half after) and their median stands for every separate call;
* ``prepare``: ``scorer.context(chunks)``: every window's prefix pass and null tail, once;
* ``question``: ``ctx.score(question)`` on the prepared context: the question's tail only. The median of
  all questions asked, and the cost of the last one.

Reported per length: the cost of the n-th question against one full call, and n questions with a
prepared context (prepare + n tails) against n separate calls, for each n. The physical limit is one
prefix pass plus one tail per question. Memory: ``ctx.nbytes`` (what the context holds) and the bytes per
token it states.

Run:  .venv/bin/python -m benchmarks.prepared_context --lengths 2000 8000 --questions 1 4 16 --threads 1
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from . import harness as H

TOPICS = ["cat", "garden", "bike", "sister", "piano", "flat", "job interview", "trip to Lyon", "doctor", "recipe",
          "marathon", "laptop", "book club", "tax form", "wedding", "car repair"]
VERBS = ["talked about", "asked for advice on", "mentioned", "planned", "complained about", "celebrated"]
DETAILS = ["on Monday", "last week", "in May", "after work", "with a friend", "for the third time", "in the rain",
           "before the holidays", "at the weekend", "early in the morning"]


def history(tokens: int, count: Any, seed: int = 0) -> list[str]:
    """Chat-like session notes, one chunk per session, until ``tokens`` tokens of chunk text."""
    rng = random.Random(seed)
    chunks: list[str] = []
    total = 0
    while total < tokens:
        n = len(chunks) + 1
        lines = [f"Session {n}: the user {rng.choice(VERBS)} the {rng.choice(TOPICS)} {rng.choice(DETAILS)}."
                 for _ in range(rng.randint(3, 6))]
        text = " ".join(lines)
        chunks.append(text)
        total += count(text)
    return chunks


def questions(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [f"When did I last talk about my {rng.choice(TOPICS)}?" for _ in range(n)]


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--questions", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--separate", type=int, default=2, help="separate full calls timed per length")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default=None)
    parser.add_argument("--name", default="prepared_context")
    args = parser.parse_args()
    H.setup_torch(args.threads)

    from qr_integrations import QRScorer

    scorer = QRScorer(H.resolve_model(args.model) if args.model else None, device="cpu", num_threads=args.threads)
    qs = questions(max(args.questions))
    rows, records = [], []
    steps = len(args.lengths) * (args.separate + 1 + max(args.questions))
    bar = H.progress(range(steps), total=steps, desc="prepared context")
    tick = iter(bar)
    for length in args.lengths:
        chunks = history(length, scorer.count_tokens)
        separate, refs = [], []
        before = (args.separate + 1) // 2  # separate calls before and after the prepared run: load drifts alike
        for q in qs[:before]:
            ref, s = timed(scorer.score, q, chunks)
            separate.append(s)
            refs.append(ref)
            next(tick, None)
        ctx, prepare = timed(scorer.context, chunks)
        next(tick, None)
        tails, answers = [], []
        for q in qs:
            got, s = timed(ctx.score, q)
            tails.append(s)
            answers.append(got)
            next(tick, None)
        for q in qs[before : args.separate]:
            ref, s = timed(scorer.score, q, chunks)
            separate.append(s)
            refs.append(ref)
            next(tick, None)
        full = statistics.median(separate)
        agree = 0.0  # the same questions scored both ways: the largest difference, relative to the largest score
        for got, ref in zip(answers, refs, strict=False):
            top = max(abs(x) for x in ref) or 1.0
            agree = max(agree, max(abs(a - b) for a, b in zip(got, ref, strict=True)) / top)
        record = {
            "tokens": length, "chunks": len(chunks), "prompt_tokens": ctx.num_tokens, "windows": ctx.num_windows,
            "full_call_s": full, "separate_s": separate, "prepare_s": prepare, "tails_s": tails,
            "bytes_per_token": ctx.bytes_per_token, "context_bytes": ctx.nbytes, "max_rel_diff": agree,
        }
        records.append(record)
        for n in args.questions:
            nth = tails[n - 1]
            with_ctx = prepare + sum(tails[:n])
            rows.append([length, n, full, nth, nth / full, with_ctx, n * full, with_ctx / (n * full)])
        ctx.close()
    bar.close()
    table = H.markdown_table(
        ["context tokens", "questions n", "full call s", "n-th question s", "n-th / full", "prepared total s",
         "separate total s", "prepared / separate"], rows)
    mem = H.markdown_table(
        ["context tokens", "prompt tokens", "windows", "bytes per token", "context MiB", "max diff / largest score"],
        [[r["tokens"], r["prompt_tokens"], r["windows"], r["bytes_per_token"], r["context_bytes"] / 2**20,
          r["max_rel_diff"]] for r in records], digits=3)
    H.write_results(args.name, {"records": records, "threads": args.threads}, table + "\n\n" + mem)
    print(table)
    print(mem)


if __name__ == "__main__":
    main()
