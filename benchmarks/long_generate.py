"""Trim, then generate, on long inputs (issue #15): answers from a 100-paragraph HotpotQA pool, whole or trimmed.

The pools and the chunk scores come from per-question records given as ``FILE@START``, so the scorer here is
exactly the one measured there: :mod:`benchmarks.long_context` runs (``benchmarks/.cache/<name>.jsonl``,
QRHead's own scoring under each cross-window strategy) or :mod:`benchmarks.position_long` with ``--records``
(the position-corrected defaults and the dense shortlist, with ``--methods own,defaults,dense_shortlist``). A generator model
(Qwen2.5-Coder-0.5B by default, greedy, a short answer) then answers each question from:

* ``full``: the whole pool in its order, cut to the generator's window (a 12k-15k token pool fits Qwen's 32k);
* ``full-<N>``: the pool cut to its first ``--truncate`` tokens (whole paragraphs), what fits a window of N;
* ``<method>@<budget>``: each method's best chunks within ``--budget`` generator tokens (kept in pool order),
  for the QRHead strategies named in ``--methods`` and BM25 and dense from the same records;
* ``longllmlingua@<budget>`` (with ``--longllmlingua``): LongLLMLingua's question-aware coarse-to-fine compression
  of the whole pool (llmlingua 0.2.2 with a local LM, the embedded SmolLM2 by default, run offline: see
  :class:`benchmarks.methods.LongLLMLingua`) at the same budget in generator tokens; its seconds per question
  are reported beside the answers' F1, and its compressions are cached per question
  (``benchmarks/.cache/longllmlingua_<lm>.jsonl``);
* ``gold``: the two supporting paragraphs (the ceiling).

The pool is the same prompt prefix for every question of a pool, so the full and truncated prompts are run
once per pool and their KV cache is reused (cropped back after each answer); greedy answers are the same as
from separate calls (``tests`` of :func:`prefix_generate` check it). Answers are cached per prompt. Token F1
and EM per condition, how often both gold paragraphs were kept, and paired randomization tests of F1: every
QRHead condition against the full context, the truncated one, BM25 and dense.

    .venv/bin/python -m benchmarks run trim-generate-long --threads 1 \\
        --records benchmarks/.cache/long_context_hotpotqa_s50.jsonl@50 benchmarks/.cache/long_context_hotpotqa_s70.jsonl@70

    # the same with LongLLMLingua beside the other trims
    .venv/bin/python -m benchmarks run trim-generate-long --threads 1 --longllmlingua \\
        --records benchmarks/.cache/long_context_hotpotqa_s50.jsonl@50 benchmarks/.cache/long_context_hotpotqa_s70.jsonl@70
"""

from __future__ import annotations

import argparse
import inspect
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import harness as H
from benchmarks.long_context import Pool, hotpot_pools
from benchmarks.trim_generate import answer_summary, clean_answer, context_messages, generator, prompt_messages


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix all token sequences share.

    Example:
        >>> common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]])
        2
    """
    n = min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != seqs[0][i] for s in seqs[1:]):
            return i
    return n


def cache_keyword(model: Any) -> str:
    """The keyword that hands a KV cache to ``model``'s ``forward`` and ``generate``: ``cache`` where the installed
    transformers has it (``past_key_values`` is deprecated there), else ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def prefix_generate(gen: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, pad_id: int) -> list[tuple[list[int], float]]:
    """Greedy continuations of prompts that share a long prefix: the prefix runs once, its cache is reused.

    Returns ``(new token ids, seconds)`` per prompt; the first prompt's seconds include the prefix pass. The
    shared cache is cropped back to the prefix after each answer, so every prompt sees exactly its own tokens.
    """
    import torch
    from transformers import DynamicCache

    n = max(common_prefix(prompts) - 1, 0)  # at least one token of each prompt runs with the answer
    out: list[tuple[list[int], float]] = []
    t0 = time.perf_counter()
    cache = DynamicCache()
    key = cache_keyword(gen)
    with torch.inference_mode():
        if n:
            gen(torch.tensor([list(prompts[0][:n])]), use_cache=True, **{key: cache})
        prefix_s = time.perf_counter() - t0
        for i, ids in enumerate(prompts):
            t = time.perf_counter()
            x = torch.tensor([list(ids)])
            res = gen.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens, do_sample=False,
                               pad_token_id=pad_id, **{key: cache if n else None})
            if n and cache.get_seq_length() > n:
                cache.crop(n - cache.get_seq_length())  # a negative count: the tokens to drop
            out.append((res[0, len(ids):].tolist(), time.perf_counter() - t + (prefix_s if i == 0 else 0.0)))
    return out


class LongLLMLinguaTrims:
    """LongLLMLingua's compressions of a pool for its questions, cached per question, the compressor loaded on
    the first miss. ``count`` counts the generator's tokens (the budget's unit)."""

    def __init__(self, model: str, gen_tag: str, count: Any) -> None:
        from benchmarks.methods import LONGLLMLINGUA_SETTINGS

        self.model, self.gen_tag, self.count = model, gen_tag, count
        self.tag = H.model_tag(model)
        self.settings = LONGLLMLINGUA_SETTINGS
        self.cache = H.JsonlCache(H.CACHE_DIR / f"longllmlingua_{self.tag}.jsonl")
        self.compressor: Any = None

    def key(self, question: str, chunks: Sequence[tuple[str | None, str]], budget: int) -> str:
        return H.cache_key("longllmlingua", "0.2.2", self.tag, self.gen_tag, budget, self.settings, question,
                           [list(c) for c in chunks])

    def get(self, question: str, chunks: Sequence[tuple[str | None, str]], budget: int) -> dict[str, Any]:
        """``{"context", "seconds", "kept", "target_token"}`` (``kept``: the paragraphs its coarse stage kept)."""
        k = self.key(question, chunks, budget)
        hit = self.cache.get(k)
        if hit is None:
            if self.compressor is None:
                from benchmarks.methods import LongLLMLingua

                self.compressor = LongLLMLingua(H.resolve_model(self.model), settings=self.settings)
            c = self.compressor.compress(question, chunks, budget, self.count)
            hit = {"context": c.context, "seconds": c.seconds, "kept": c.kept, "target_token": c.target_token}
            self.cache.put(k, hit)
        return hit


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = H.common_parser(__doc__.splitlines()[0], limit=None)
    p.add_argument("--records", nargs="+", required=True, metavar="FILE@START",
                   help="per-question records of benchmarks.long_context runs (HotpotQA, --merge 1), each with its --start")
    p.add_argument("--pool-size", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--generator", default="qwen", help="the answering model (smollm2, qwen or a path)")
    p.add_argument("--methods", default="per_window,overlap", help="QRHead strategies from the records to trim by")
    p.add_argument("--budget", type=int, default=1500, help="token budget of a trimmed context (generator tokens)")
    p.add_argument("--truncate", type=int, default=8192, help="the truncated full context's tokens (0: none)")
    p.add_argument("--full", action=argparse.BooleanOptionalAction, default=True,
                   help="answer from the whole pool too (--no-full skips it: one long prefix pass per pool)")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--longllmlingua", action="store_true",
                   help="add LongLLMLingua (llmlingua 0.2.2, offline) at --budget as the condition longllmlingua@BUDGET")
    p.add_argument("--longllmlingua-model", default="smollm2",
                   help="LongLLMLingua's language model (smollm2: the embedded model, qwen, or a path)")
    p.add_argument("--skip", type=int, default=0,
                   help="skip the first N question records (then take --limit): a second process can fill the same "
                        "caches with other questions, and a run over all of them then reads both")
    args = p.parse_args(argv)
    if args.skip < 0:
        p.error(f"--skip takes a count of question records (0 or more), got {args.skip}")
    H.setup_torch(args.threads)
    from qr_integrations import QRScorer

    gen_tag = H.model_tag(args.generator)
    gen_scorer = QRScorer(H.resolve_model(args.generator), device="cpu", num_threads=args.threads)
    gen, tok = generator(gen_scorer)
    window = int(getattr(gen.config, "max_position_embeddings", 0) or 32768)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    cache = H.JsonlCache(H.CACHE_DIR / f"long_generate_{gen_tag}.jsonl")

    pools: dict[str, Pool] = {}
    records: list[dict[str, Any]] = []
    for spec in args.records:
        path, _, at = spec.partition("@")
        # every pool a run from START could have built (records name the ones it did); no merging
        built = hotpot_pools(args.data_dir, int(at or 50), 100 // args.pool_size, args.pool_size, 1, args.seed)
        rename = {f"pool{i}": pl.name for i, pl in enumerate(built)}  # runs before pools were named q<start>
        pools.update({pl.name: pl for pl in built})
        for r in H.read_jsonl(Path(path)):
            if r.get("kind") == "question":
                r["pool"] = rename.get(r["pool"], r["pool"])
                records.append(r)
    records = records[args.skip:]
    if args.limit:
        records = records[: args.limit]
    if not records:
        raise SystemExit("no question records in --records")
    methods = [m for m in args.methods.split(",") if m]
    missing = sorted({m for m in [*methods, "bm25", "dense"] if m not in records[0]["scores"]})
    if missing:
        raise SystemExit(f"the records have no scores for {missing}; they have {sorted(records[0]['scores'])}")
    questions = {q["idx"]: q for q in H.hotpot_questions(args.data_dir)}

    def prompt_ids(question: str, paragraphs: list[tuple[str | None, str]]) -> list[int]:
        msgs = prompt_messages(question, [(t or "", x) for t, x in paragraphs])
        return list(tok.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)["input_ids"])

    def first_fitting(chunks: list[tuple[str | None, str]], limit: int) -> list[int]:
        """The pool's leading chunks whose prompt stays within ``limit`` tokens (whole paragraphs)."""
        counts = [len(tok(f"{t}\n{x}\n\n", add_special_tokens=False)["input_ids"]) for t, x in chunks]
        keep, used = [], 120  # instruction, chat template and question
        for i, c in enumerate(counts):
            if used + c > limit:
                break
            keep.append(i)
            used += c
        return keep

    budget_tag = f"@{args.budget}"
    full_conds = (["full"] if args.full else []) + ([f"full-{args.truncate}"] if args.truncate else [])
    lingua = f"longllmlingua{budget_tag}"
    conditions = [*full_conds, *(f"{m}{budget_tag}" for m in [*methods, "bm25", "dense"]),
                  *([lingua] if args.longllmlingua else []), "gold"]
    per: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions}
    trims = (LongLLMLinguaTrims(args.longllmlingua_model, gen_tag,
                                lambda text: len(tok(text, add_special_tokens=False)["input_ids"]))
             if args.longllmlingua else None)

    def record(cond: str, r: dict[str, Any], keep: list[int], pred_ids: list[int], ntok: int, sec: float,
               pool: Pool, **extra: Any) -> None:
        q = questions[r["qid"]]
        pred = clean_answer(tok.decode(pred_ids, skip_special_tokens=True))
        gold_kept = len({pool.ids[i] for i in keep} & set(r["gold"]))
        per[cond].append({"qid": r["qid"], "pred": pred, "gold": q["answer"], "em": H.exact_match(pred, q["answer"]),
                          "f1": H.token_f1(pred, q["answer"]), "prompt_tokens": ntok, "seconds": sec,
                          "gold_kept": gold_kept, **extra})

    by_pool: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_pool.setdefault(r["pool"], []).append(r)
    total = len(records) * len(conditions)
    bar = H.progress(range(total), desc=f"long generate {gen_tag}", disable=args.no_progress)
    tick = iter(bar)
    for name, recs in by_pool.items():
        pool = pools[name]
        counts = [len(tok(f"{t}\n{x}", add_special_tokens=False)["input_ids"]) for t, x in pool.chunks]
        # the full and truncated contexts: one prefix pass per pool, every question's answer from its cache
        for cond in full_conds:
            keep = first_fitting(pool.chunks, window - args.max_new_tokens if cond == "full" else args.truncate)
            paras = [pool.chunks[i] for i in keep]
            prompts = [prompt_ids(questions[r["qid"]]["question"], paras) for r in recs]
            keys = [H.cache_key("long-gen", gen_tag, args.max_new_tokens, ids) for ids in prompts]
            todo = [i for i, k in enumerate(keys) if cache.get(k) is None]
            if todo:
                for i, (new, sec) in zip(todo, prefix_generate(gen, [prompts[i] for i in todo], args.max_new_tokens, pad_id),
                                         strict=True):
                    cache.put(keys[i], {"ids": new, "seconds": sec})
            for r, ids, k in zip(recs, prompts, keys, strict=True):
                hit = cache.get(k)
                record(cond, r, keep, hit["ids"], len(ids), hit["seconds"], pool)
                next(tick, None)
        for r in recs:
            q = questions[r["qid"]]
            for cond in conditions[len(full_conds):]:
                extra: dict[str, Any] = {}
                if cond == lingua and trims is not None:
                    c = trims.get(q["question"], pool.chunks, args.budget)
                    keep = sorted(c["kept"])
                    msgs = context_messages(q["question"], c["context"])
                    ids = list(tok.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)["input_ids"])
                    extra = {"trim_seconds": c["seconds"], "context_tokens": len(tok(c["context"], add_special_tokens=False)["input_ids"]),
                             "paragraphs_kept": len(c["kept"])}
                else:
                    if cond == "gold":
                        keep = sorted(pool.ids.index(g) for g in r["gold"])
                    else:
                        keep = sorted(H.budget_select(r["scores"][cond.removesuffix(budget_tag)], counts, args.budget))
                    ids = prompt_ids(q["question"], [pool.chunks[i] for i in keep])
                k = H.cache_key("long-gen", gen_tag, args.max_new_tokens, ids)
                hit = cache.get(k)
                if hit is None:
                    new, sec = prefix_generate(gen, [ids], args.max_new_tokens, pad_id)[0]
                    hit = {"ids": new, "seconds": sec}
                    cache.put(k, hit)
                record(cond, r, keep, hit["ids"], len(ids), hit["seconds"], pool, **extra)
                next(tick, None)
    bar.close()
    return report(args, per, conditions, methods, budget_tag, full_conds, gen_tag)


def report(args: Any, per: dict[str, list[dict[str, Any]]], conditions: Sequence[str], methods: Sequence[str],
           budget_tag: str, full_conds: Sequence[str], gen_tag: str) -> dict[str, Any]:
    rows, results = [], []
    for c in conditions:
        res = answer_summary(c, per[c])
        results.append(res)
        rows.append([c, res["em"], res["f1"], res["both_gold_kept"], round(res["mean_prompt_tokens"])])
    tests: dict[str, dict[str, Any]] = {}
    lingua = f"longllmlingua{budget_tag}"
    has_lingua = lingua in per
    for m in methods:
        mine = [x["f1"] for x in per[f"{m}{budget_tag}"]]
        for other in [*full_conds, f"bm25{budget_tag}", f"dense{budget_tag}", *([lingua] if has_lingua else [])]:
            tests[f"{m}{budget_tag} vs {other}"] = H.paired_score_test(mine, [x["f1"] for x in per[other]])
    if has_lingua:
        mine = [x["f1"] for x in per[lingua]]
        for other in [*full_conds, f"bm25{budget_tag}", f"dense{budget_tag}"]:
            tests[f"{lingua} vs {other}"] = H.paired_score_test(mine, [x["f1"] for x in per[other]])
    qids = [x["qid"] for x in per[conditions[0]]]
    table = (f"HotpotQA pools of {args.pool_size} questions (100 paragraphs, one per chunk), {len(qids)} questions; "
             f"answers by {gen_tag} (greedy, max {args.max_new_tokens} new tokens); trimmed contexts keep each "
             f"method's best chunks within {args.budget} {gen_tag} tokens, in pool order; QRHead scores from the "
             f"records ({', '.join(args.records)}; embedded model unless those runs said otherwise)\n\n"
             + H.markdown_table(["context", "EM", "F1", "both gold kept", "prompt tokens"], rows)
             + "\n\nPaired randomization tests of token F1: mean difference, p, wins/ties/losses\n\n"
             + H.markdown_table(["pair", "F1 difference"], [
                 [pair, f"{t['mean_diff']:+.3f}, {H.format_p(t['p'])} ({'/'.join(map(str, t['wins_ties_losses']))})"]
                 for pair, t in tests.items()]))
    if has_lingua:
        got = per[lingua]
        n = len(got)
        table += (f"\n\n{lingua}: LongLLMLingua (llmlingua 0.2.2, rank_method=longllmlingua, its README's settings) "
                  f"with {args.longllmlingua_model} as its language model, {n} questions: compression "
                  f"{sum(x['trim_seconds'] for x in got) / n:.1f} s per question, answer "
                  f"{sum(x['seconds'] for x in got) / n:.1f} s per question; compressed context "
                  f"{sum(x['context_tokens'] for x in got) / n:.0f} {gen_tag} tokens on average "
                  f"(max {max(x['context_tokens'] for x in got)}), from "
                  f"{sum(x['paragraphs_kept'] for x in got) / n:.1f} paragraphs its coarse stage kept "
                  "('both gold kept' counts those)")
    payload = {"settings": vars(args) | {"data_dir": str(args.data_dir)}, "results": results, "paired_tests_f1": tests,
               "answers": per}
    name = args.out or f"long_generate_{gen_tag}"
    H.write_results(name, payload, table)
    print(table)
    return payload
