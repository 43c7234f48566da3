"""Needle in a haystack: is the chunk holding a planted fact ranked first, and kept by ``trim(max_tokens=1000)``?

The haystack is real text: SciFact abstracts (a fixed shuffle) joined as paragraphs up to each context
length. A one-sentence fact is appended to the paragraph found at each depth (0% = first paragraph,
100% = last). The text is chunked as ``QRScorer.trim`` chunks a plain string (paragraphs, then sentences
up to ``chunk_size`` tokens). Each method scores the chunks; "kept" applies trim's greedy 1000-token budget
to its scores. Inputs longer than the model window are scored in windows (``--max-context-tokens``).

    .venv/bin/python -m benchmarks run niah --model smollm2 --lengths 2048 4096 8192 16384 --depths 0 25 50 75 100
"""

from __future__ import annotations

import random

from benchmarks import harness as H
from benchmarks import methods as M

NEEDLES = [
    ("The reference thermometers of the Tromsø calibration laboratory are kept in a cabinet painted bright orange.",
     "What colour is the cabinet that holds the reference thermometers of the Tromsø calibration laboratory?"),
    ("Dr. Ilse Varga named the centrifuge in her laboratory Mercury, after a cat she had as a child.",
     "What name did Dr. Ilse Varga give to the centrifuge in her laboratory?"),
    ("The annual rowing race between the two marine biology institutes was won by the team from Kiel in 2019.",
     "Which team won the 2019 rowing race between the two marine biology institutes?"),
]


def haystack_paragraphs(data_dir: str, seed: int = 13) -> list[str]:
    rows = H.read_jsonl(H.resolve_data_dir(data_dir) / "scifact" / "corpus.jsonl")
    paras = [" ".join(r["text"].split()) for r in rows if len(r.get("text", "").split()) >= 40]
    random.Random(seed).shuffle(paras)
    return paras


def build_text(paras: list[str], counts: list[int], length: int, depth: int, needle: str) -> str:
    """Paragraphs up to ``length`` tokens with ``needle`` appended to the paragraph at ``depth`` percent."""
    chosen, used = [], 0
    for p, n in zip(paras, counts, strict=False):
        if chosen and used + n > length:
            break
        chosen.append(p)
        used += n
    at = min(len(chosen) - 1, round(depth / 100 * (len(chosen) - 1)))
    chosen = list(chosen)
    chosen[at] = chosen[at] + " " + needle
    return "\n\n".join(chosen)


def main(argv: list[str] | None = None) -> dict:
    p = H.common_parser(__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    p.add_argument("--depths", type=int, nargs="+", default=[0, 25, 50, 75, 100])
    p.add_argument("--needles", type=int, default=1, help=f"needles per cell (1..{len(NEEDLES)})")
    p.add_argument("--budget", type=int, default=1000, help="trim budget in tokens")
    p.add_argument("--max-context-tokens", type=int, default=None, help="window size (default: the model's)")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    from qr_integrations import QRScorer
    from qr_integrations.core.chunking import split_text

    tag = H.model_tag(args.model)
    name = args.out or f"niah_{tag}"
    opts = {"max_context_tokens": args.max_context_tokens} if args.max_context_tokens else {}
    opts |= H.scorer_options(args)
    scorer = QRScorer(H.resolve_model(args.model), device="cpu", **opts)
    qr_heads, heads_note = H.pick_heads(scorer, args.heads)
    qr = M.QRMethods(scorer, qr_heads, H.CACHE_DIR / "vectors" / f"niah_{tag}")
    dense = M.Dense()
    paras = haystack_paragraphs(args.data_dir)
    need = max(args.lengths)
    counts: list[int] = []
    for para in paras:  # token counts only as far as the longest haystack needs
        counts.append(scorer.count_tokens(para) + 2)
        if sum(counts) > need + 2000:
            break
    methods = ["qrhead", "all-heads", "bm25", "dense"] if not qr.same else ["qrhead", "bm25", "dense"]
    cells: list[dict] = []
    timer = H.Timer()
    grid = [(length, d, k) for length in args.lengths for d in args.depths for k in range(args.needles)]
    for length, depth, k in H.progress(grid, desc=f"niah {tag}", disable=args.no_progress):
        needle, question = NEEDLES[k]
        text = build_text(paras, counts, length, depth, needle)
        chunks = split_text(text, scorer.config.chunk_size, scorer.count_tokens)
        target = next(i for i, c in enumerate(chunks) if needle in c)
        ntok = [scorer.count_tokens(c) for c in chunks]
        key = H.cache_key("niah", tag, length, depth, k, args.max_context_tokens)
        qr_scores, seconds = qr.scores(question, chunks, key=key)
        if seconds is not None:
            timer.add(f"qr@{length}", seconds)
        per = {"qrhead": qr_scores["qrhead"], "all-heads": qr_scores["all-heads"],
               "bm25": M.bm25_scores(question, chunks), "dense": dense.scores(question, chunks)}
        for m in methods:
            s = per[m]
            first = max(range(len(s)), key=lambda i, s=s: (s[i], -i)) == target
            kept = target in H.budget_select(s, ntok, args.budget)
            cells.append({"length": length, "depth": depth, "needle": k, "method": m, "top1": first, "kept": kept,
                          "chunks": len(chunks), "tokens": sum(ntok), "target": target})

    def frac(m: str, length: int, depth: int, field: str) -> float:
        v = [c[field] for c in cells if c["method"] == m and c["length"] == length and c["depth"] == depth]
        return sum(v) / len(v) if v else float("nan")

    names = {"qrhead": "QRHead" + (" (= all heads)" if qr.same else ""), "all-heads": "all heads", "bm25": "BM25",
             "dense": "dense MiniLM"}
    rows, plots = [], []
    for m in methods:
        for field in ("top1", "kept"):
            mat = [[frac(m, length, d, field) for d in args.depths] for length in args.lengths]
            rows.append([names[m], field] + [sum(r) / len(r) for r in mat])
            img = H.IMG_DIR / f"niah_{tag}_{m}_{field}.png"
            what = "needle chunk ranked first" if field == "top1" else f"needle kept by trim(max_tokens={args.budget})"
            H.heatmap(mat, [f"{length // 1024}k" for length in args.lengths], [f"{d}%" for d in args.depths],
                      f"{names[m]} ({tag}): {what}", img, xlabel="needle depth", ylabel="context tokens")
            plots.append(str(img.relative_to(H.REPO_ROOT)))
    table = (f"Needle in a haystack (SciFact abstracts), model {tag}, {args.needles} needle(s) per cell, "
             f"depths {args.depths}; mean over depths per length; QRHead heads: {heads_note}\n\n"
             + H.markdown_table(["method", "metric"] + [f"{length // 1024}k" for length in args.lengths], rows))
    payload = {"settings": vars(args) | {"data_dir": str(args.data_dir)}, "heads": H.head_set_string(qr_heads),
               "heads_note": heads_note, "cells": cells, "plots": plots, "latency": timer.summary(),
               "window_tokens": scorer.window_tokens}
    H.write_results(name, payload, table)
    print(table)
    return payload
