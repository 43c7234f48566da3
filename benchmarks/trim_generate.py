"""Trim, then generate: HotpotQA answer EM/F1 from the full context, trimmed contexts and the gold paragraphs.

The same local model answers each question (greedy, a short answer) from:
the full ten paragraphs; the top-2 / top-3 paragraphs by QRHead's own scoring, all heads, dense
all-MiniLM-L6-v2 and BM25 (kept paragraphs stay in their original order); the top-2 / top-3 by the scorer
as a user calls it: ``defaults`` (the generator's model at every default setting) and, for a model other
than the embedded one, ``shipped`` (``QRScorer()`` itself: the embedded model, every default); and the two
gold paragraphs (upper bound). The dataset's paragraph order is no retriever's, so the defaults' position
corrections apply as they do for ``trim``. QRHead's own, all-heads, dense and BM25 scores come from
:mod:`benchmarks.hotpot_evidence` (same cache), questions 50-99 by default.

    .venv/bin/python -m benchmarks run trim-generate --model smollm2 --start 50 --limit 50
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks import harness as H
from benchmarks import methods as M

INSTRUCTION = ("Answer the question using the paragraphs. Reply with the answer only: a name, a date, a number, "
               "a short phrase, or yes/no.")


def prompt_messages(question: str, paragraphs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return context_messages(question, "\n\n".join(f"{t}\n{x}" for t, x in paragraphs))


def context_messages(question: str, context: str) -> list[dict[str, str]]:
    """The answering prompt over a context given as one text (a compressor's output, or joined paragraphs)."""
    return [{"role": "user", "content": f"{INSTRUCTION}\n\n{context}\n\nQuestion: {question}\nAnswer:"}]


def clean_answer(text: str) -> str:
    line = text.strip().split("\n")[0].strip()
    for prefix in ("Answer:", "The answer is", "answer:"):
        if line.startswith(prefix):
            line = line[len(prefix):].strip()
    return line.rstrip(".")


def answer_summary(condition: str, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean EM and F1 of one condition's answers, how often both gold paragraphs were kept, mean prompt tokens."""
    n = len(answers)
    return {"condition": condition, "n": n, "em": sum(x["em"] for x in answers) / n,
            "f1": sum(x["f1"] for x in answers) / n,
            "both_gold_kept": sum(1 for x in answers if x["gold_kept"] == 2) / n,
            "mean_prompt_tokens": sum(x["prompt_tokens"] for x in answers) / n}


def generator(scorer: Any) -> tuple[Any, Any]:
    """The scorer's model with its language-model head (a second copy, for generation) and its tokenizer."""
    from transformers import AutoModelForCausalLM

    lm = scorer.loaded
    gen = AutoModelForCausalLM.from_pretrained(lm.source, dtype=lm.dtype).to(lm.device).eval()
    return gen, lm.tokenizer


def answerer(scorer: Any, tag: str, max_new_tokens: int) -> Callable[[str, list[tuple[str, str]]], tuple[str, int, float]]:
    """``answer(question, paragraphs) -> (answer, prompt tokens, seconds)`` by the scorer's model, greedy, cached
    on disk per prompt (``benchmarks/.cache/generate_<tag>.jsonl``)."""
    import torch

    gen, tok = generator(scorer)
    cache = H.JsonlCache(H.CACHE_DIR / f"generate_{tag}.jsonl")

    def answer(question: str, paragraphs: list[tuple[str, str]]) -> tuple[str, int, float]:
        key = H.cache_key("gen", tag, max_new_tokens, question, paragraphs)
        hit = cache.get(key)
        if hit is None:
            ids = tok.apply_chat_template(prompt_messages(question, paragraphs), add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)["input_ids"]
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = gen.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                   pad_token_id=tok.pad_token_id or tok.eos_token_id)
            text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            hit = {"text": text, "prompt_tokens": int(ids.shape[1]), "seconds": time.perf_counter() - t0}
            cache.put(key, hit)
        return clean_answer(hit["text"]), hit["prompt_tokens"], hit["seconds"]

    return answer


def main(argv: list[str] | None = None) -> dict:
    p = H.common_parser(__doc__.splitlines()[0], limit=50)
    p.add_argument("--start", type=int, default=50, help="first question (0-49 were used for head detection)")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--top", type=int, nargs="+", default=[2, 3], help="paragraph counts to keep")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    qs = H.hotpot_questions(args.data_dir, args.start, args.limit)
    tag = H.model_tag(args.model)
    name = args.out or f"trim_generate_{tag}"
    from qr_integrations import QRScorer

    scorer = QRScorer(H.resolve_model(args.model), device="cpu")
    qr_heads, heads_note = H.pick_heads(scorer, args.heads)
    qr = M.QRMethods(scorer, qr_heads, H.CACHE_DIR / "vectors" / f"hotpot_{tag}")
    timer = H.Timer()
    scores = M.hotpot_scores(qs, tag, qr, args.no_progress, timer)
    embedded = scorer.config.model is None  # then QRScorer() is this scorer: no second copy of the model
    as_called = {"defaults": scorer} | ({} if embedded else {"shipped": QRScorer(device="cpu")})
    for label, s in as_called.items():  # the scorer's own call at its defaults, as trim() makes it
        scores[label] = {q["idx"]: s.score(q["question"], H.paragraph_pairs(q))
                         for q in H.progress(qs, desc=f"{label} scores", disable=args.no_progress)}
    rankers = ["qrhead", *as_called, "dense", "bm25"] + ([] if qr.same else ["all-heads"])

    answer = answerer(scorer, tag, args.max_new_tokens)
    conditions = ["full"] + [f"{r}-top{k}" for r in rankers for k in args.top] + ["gold"]
    per: dict[str, list[dict]] = {c: [] for c in conditions}
    for q in H.progress(qs, desc=f"generate {tag}", disable=args.no_progress):
        pars = H.paragraph_pairs(q)
        gold = [i for i, p_ in enumerate(q["paragraphs"]) if p_["is_supporting"]]
        for c in conditions:
            if c == "full":
                keep = list(range(len(pars)))
            elif c == "gold":
                keep = gold
            else:
                r, k = c.rsplit("-top", 1)
                keep = sorted(H.budget_select(scores[r][q["idx"]], [1] * len(pars), None, top_n=int(k)))
            pred, ntok, sec = answer(q["question"], [pars[i] for i in keep])
            per[c].append({"qid": q["idx"], "pred": pred, "gold": q["answer"], "em": H.exact_match(pred, q["answer"]),
                           "f1": H.token_f1(pred, q["answer"]), "prompt_tokens": ntok, "seconds": sec,
                           "gold_kept": len(set(keep) & set(gold))})

    rows, results = [], []
    for c in conditions:
        v = per[c]
        res = answer_summary(c, v) | {"generation_latency": H.latency_stats([x["seconds"] for x in v])}
        results.append(res)
        rows.append([c, res["em"], res["f1"], res["both_gold_kept"], round(res["mean_prompt_tokens"]),
                     res["generation_latency"]["median_s"]])
    table = (f"HotpotQA questions {args.start}-{args.start + len(qs) - 1}, generator and scorer {tag} (greedy, "
             f"max {args.max_new_tokens} new tokens); QRHead heads: {heads_note}\n\n"
             + H.markdown_table(["context", "EM", "F1", "both gold kept", "prompt tokens", "median gen s"], rows))
    tests: dict[str, dict[str, Any]] = {}  # QRHead-trimmed F1 against the full context and the other trims
    for mine in ["qrhead", *as_called]:
        for k in args.top:
            others = [r for r in rankers if r != mine and r not in as_called]  # each defaults pair tested once
            for other in ["full"] + [f"{r}-top{k}" for r in others]:
                t = H.paired_score_test([x["f1"] for x in per[f"{mine}-top{k}"]], [x["f1"] for x in per[other]])
                tests[f"{mine}-top{k} vs {other}"] = t
    if tests:
        table += ("\n\nPaired randomization test of token F1 (scipy, sign flips), QRHead-trimmed against: " + "; ".join(
            f"{pair} {t['mean_diff']:+.3f}, {H.format_p(t['p'])} (wins/ties/losses "
            f"{'/'.join(map(str, t['wins_ties_losses']))})" for pair, t in tests.items()))
    payload = {"settings": vars(args) | {"data_dir": str(args.data_dir)}, "heads": H.head_set_string(qr_heads),
               "heads_note": heads_note, "results": results, "paired_tests_f1": tests,
               "examples": {c: per[c][:5] for c in conditions}}
    H.write_results(name, payload, table)
    print(table)
    return payload
