"""Batch throughput on the CPU: ``score_batch`` against one ``score`` call per pair (issue #12, item 3).

Two workloads, each run both ways in one process on one torch thread, alternating which way goes first:

* ``distinct``: SciFact test queries, each with its own BM25 top-20 (abstracts cut to 150 words as in
  ``benchmarks.retriever_order``): nothing to share, so the batch can only match the loop;
* ``shared``: questions over a few repeated chunk lists (chat-like session notes of ``--shared-tokens``
  tokens, ``benchmarks.prepared_context.history``): pairs with the same chunks share one prepared context
  inside ``score_batch``.

Both ways must give the same scores (checked, to 1e-5 of the largest score). Reported: seconds per pair
and the loop / batch throughput ratio.

``padded`` answers whether padding pairs into one batched forward pass would pay on the CPU: the bare
decoder (no capture) over ``--pad-pairs`` random prompts of ``--pad-tokens`` tokens, as one padded batch
against one pass each. On a GPU batching fills the device; on a CPU one long prompt already keeps the
cores busy, so the loop is expected to be as fast.

Run:  .venv/bin/python -m benchmarks run batch --threads 1
"""

from __future__ import annotations

import time
from typing import Any

from . import harness as H
from . import prepared_context as P
from . import retriever_order as R


def run_both(scorer: Any, queries: list[str], lists: list[list[str]], loop_first: bool) -> dict[str, Any]:
    def loop() -> list[list[float]]:
        return [scorer.score(q, c) for q, c in zip(queries, lists, strict=True)]

    def batch() -> list[list[float]]:
        return scorer.score_batch(queries, lists, show_progress=False)

    order = [("loop", loop), ("batch", batch)] if loop_first else [("batch", batch), ("loop", loop)]
    out: dict[str, Any] = {}
    for name, fn in order:
        t0 = time.perf_counter()
        out[name + "_scores"] = fn()
        out[name + "_s"] = time.perf_counter() - t0
    diff = 0.0
    for a, b in zip(out["loop_scores"], out["batch_scores"], strict=True):
        top = max(abs(x) for x in a) or 1.0
        diff = max(diff, max(abs(x - y) for x, y in zip(a, b, strict=True)) / top)
    return {"pairs": len(queries), "loop_s": out["loop_s"], "batch_s": out["batch_s"], "max_rel_diff": diff}


def padded_check(scorer: Any, pairs: int, tokens: int) -> dict[str, Any]:
    """The bare decoder over ``pairs`` prompts of ``tokens`` tokens: one padded batch against one pass each."""
    import torch

    lm = scorer.loaded
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 20000, (pairs, tokens), generator=gen)
    mask = torch.ones_like(ids)
    mask[1:, : tokens // 4] = 0  # the others a quarter shorter, left-padded, as a bucket would hold them
    out = {}
    with torch.inference_mode():
        lm.model(input_ids=ids[:1, :64])  # warm up
        t0 = time.perf_counter()
        for i in range(pairs):
            keep = mask[i].bool()
            lm.model(input_ids=ids[i : i + 1, keep])
        out["one_at_a_time_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        lm.model(input_ids=ids, attention_mask=mask)
        out["padded_batch_s"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> None:
    p = H.common_parser(__doc__.splitlines()[0])
    p.add_argument("--distinct", type=int, default=6, help="SciFact pairs with their own candidates")
    p.add_argument("--contexts", type=int, default=2, help="shared workload: distinct chunk lists")
    p.add_argument("--per-context", type=int, default=4, help="shared workload: questions per chunk list")
    p.add_argument("--shared-tokens", type=int, default=2000, help="shared workload: tokens per chunk list")
    p.add_argument("--pad-pairs", type=int, default=4, help="padded check: prompts per batch")
    p.add_argument("--pad-tokens", type=int, default=1024, help="padded check: tokens of the longest prompt")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    from qr_integrations import QRScorer

    scorer = QRScorer(device="cpu", layout="reversed", num_threads=args.threads)
    scorer.score("warm up", ["one", "two"])
    items, _ = R.scifact_items(args.data_dir, 20, 150, args.distinct)
    sci = [it for it in items if it.retriever == "bm25"]
    workloads = {
        "distinct": ([it.query for it in sci], [it.texts for it in sci]),
    }
    qs = P.questions(args.contexts * args.per_context)
    lists = [P.history(args.shared_tokens, scorer.count_tokens, seed=10 + i) for i in range(args.contexts)]
    workloads["shared"] = (qs, [lists[i % args.contexts] for i in range(len(qs))])
    rows, records = [], {}
    for k, (name, (queries, chunk_lists)) in enumerate(H.progress(list(workloads.items()), desc="batch workloads",
                                                                 disable=args.no_progress)):
        r = run_both(scorer, queries, chunk_lists, loop_first=k % 2 == 0)
        records[name] = r
        rows.append([name, r["pairs"], r["loop_s"] / r["pairs"], r["batch_s"] / r["pairs"], r["loop_s"] / r["batch_s"],
                     r["max_rel_diff"]])
    table = H.markdown_table(["workload", "pairs", "loop s per pair", "score_batch s per pair",
                              "throughput ratio (batch / loop)", "max diff / largest score"], rows)
    pad = padded_check(scorer, args.pad_pairs, args.pad_tokens)
    records["padded"] = pad
    table += "\n\n" + H.markdown_table(
        ["bare decoder, CPU", "prompts", "longest prompt tokens", "one at a time s", "one padded batch s",
         "throughput ratio (batch / one at a time)"],
        [["padded batch", args.pad_pairs, args.pad_tokens, pad["one_at_a_time_s"], pad["padded_batch_s"],
          pad["one_at_a_time_s"] / pad["padded_batch_s"]]])
    H.write_results("batch", {"records": records, "threads": args.threads}, table)
    print(table)
