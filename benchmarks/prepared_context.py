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

``--memory`` measures instead, for each length, the peak resident memory of one plain call and of a
prepared context asked ``--memory-questions`` questions, each in a fresh child process (so that neither
inherits the other's freed heap): RSS sampled every 5 ms during the measured phase, reported as the peak
over the process's RSS after loading the model and as the whole process's peak.

Run:  .venv/bin/python -m benchmarks run prepared-context --lengths 2000 8000 --questions 1 4 16 --threads 1
      .venv/bin/python -m benchmarks run prepared-context-memory --lengths 32000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
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


def rss_bytes() -> int:
    """This process's resident set size, from /proc (Linux)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss(fn: Callable[[], Any], every: float = 0.005) -> tuple[Any, int]:
    """``fn()`` and the highest RSS seen while it ran (sampled every ``every`` seconds)."""
    peak = rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(every)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        out = fn()
    finally:
        done.set()
        t.join()
    return out, max(peak, rss_bytes())


def memory_child(mode: str, length: int, n_questions: int, threads: int, kv_dtype: str | None = None,
                 cross_window: str | None = None) -> dict[str, Any]:
    """One measurement in this (fresh) process: ``call`` (one plain score) or ``context`` (prepare + asks)."""
    from qr_integrations import QRScorer

    scorer = QRScorer(device="cpu", num_threads=threads, **({"cross_window": cross_window} if cross_window else {}))
    scorer.score("warm up", ["one", "two"])
    chunks = history(length, scorer.count_tokens)
    qs = questions(n_questions)
    base = rss_bytes()
    out: dict[str, Any] = {"mode": mode, "tokens": length, "after_load": base, "kv_dtype": kv_dtype}
    if mode == "call":
        _, peak = peak_rss(lambda: scorer.score(qs[0], chunks))
    else:
        def run() -> int:
            ctx = scorer.context(chunks, kv_dtype=kv_dtype)
            for q in qs:
                ctx.score(q)
            nbytes = ctx.nbytes
            ctx.close()
            return nbytes
        out["context_bytes"], peak = peak_rss(run)
    out["peak"] = peak
    return out


def memory(args: Any) -> None:
    rows, records = [], []
    for length in args.lengths:
        got = {}
        for mode in ("call", "context"):
            cmd = [sys.executable, "-m", "benchmarks.prepared_context", "--memory-child", mode, "--lengths", str(length),
                   "--memory-questions", str(args.memory_questions), "--threads", str(args.threads)]
            if args.kv_dtype and mode == "context":
                cmd += ["--kv-dtype", args.kv_dtype]
            if args.cross_window:
                cmd += ["--cross-window", args.cross_window]
            res = subprocess.run(cmd, check=True, capture_output=True, text=True)
            got[mode] = json.loads(res.stdout.strip().splitlines()[-1])
        call, ctx = got["call"], got["context"]
        grow_call, grow_ctx = call["peak"] - call["after_load"], ctx["peak"] - ctx["after_load"]
        records.append({"tokens": length, "call": call, "context": ctx})
        mib = 2**20
        rows.append([length, args.kv_dtype or "model's (exact)", call["after_load"] / mib, grow_call / mib, grow_ctx / mib, ctx["context_bytes"] / mib,
                     grow_ctx / grow_call, call["peak"] / mib, ctx["peak"] / mib, ctx["peak"] / call["peak"]])
    table = H.markdown_table(
        ["context tokens", "context KV dtype", "RSS after load MiB", "one call: peak growth MiB",
         f"prepared + {args.memory_questions} questions: peak growth MiB", "ctx.nbytes MiB", "growth ratio",
         "one call: process peak MiB", "prepared: process peak MiB", "process peak ratio"], rows)
    H.write_results(args.name + "_memory" + (f"_{args.kv_dtype}" if args.kv_dtype else ""), {"records": records, "threads": args.threads}, table)
    print(table)


def main(argv: list[str] | None = None) -> None:
    parser = H.BenchParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--questions", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--separate", type=int, default=2, help="separate full calls timed per length")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default=None)
    parser.add_argument("--name", default="prepared_context")
    parser.add_argument("--memory", action="store_true", help="measure peak memory (child processes) instead of time")
    parser.add_argument("--memory-questions", type=int, default=4)
    parser.add_argument("--memory-child", choices=["call", "context"], help=argparse.SUPPRESS)
    parser.add_argument("--cross-window", default=None,
                        help="ScorerConfig.cross_window (default: the library's, overlap; the recorded figures used per_window)")
    parser.add_argument("--kv-dtype", choices=["float16", "bfloat16"], default=None,
                        help="with --memory: store the prepared context's KV cache in this dtype")
    args = parser.parse_args(argv)
    H.setup_torch(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.lengths[0], args.memory_questions, args.threads,
                                      args.kv_dtype, args.cross_window)))
        return
    if args.memory:
        memory(args)
        return

    from qr_integrations import QRScorer

    scorer = QRScorer(H.resolve_model(args.model) if args.model else None, device="cpu", num_threads=args.threads,
                      **H.scorer_options(args))
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
