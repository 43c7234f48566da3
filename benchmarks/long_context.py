"""Long contexts past the model's window: cross-window strategies against BM25 and dense (issue #15).

Two kinds of long input, each scored in windows of ``max_context_tokens`` (the model's own by default):

* **HotpotQA pools**: the 10 paragraphs of ``--pool-size`` consecutive questions (from ``--start``; the
  shipped head sets were detected on questions 0-49, so the default starts at 50) shuffled with a fixed
  seed into one input. Every question of the pool is asked over the whole pool; its gold chunks are its 2
  supporting paragraphs. One prepared context per pool (``scorer.context``) answers all its questions.
  ``--merge N`` groups the shuffled paragraphs into chunks of 1..N paragraphs (random, fixed seed): chunks of
  very different lengths, for the length-bias and ``pieces`` measurements; a chunk is gold when it holds a
  supporting paragraph.
* **SciFact**: each test query over its BM25 top-100 abstracts (BM25 order, ``layout="reversed"`` as the
  adapters use for retriever output) as one input: one input per query, so every strategy pays its full
  cost per query.

Strategies (``ScorerConfig.cross_window``), computed with as few passes as possible and no private API:

* ``per_window``, ``window_z``, ``window_share``: views of the first pass of one ``HeadAttention``;
* ``overlap``: the same result with its shifted second pass (scored once with ``cross_window="overlap"``,
  which also yields the three views above from its first pass);
* ``overlap+z``: both passes, each standardised per window;
* ``tournament``: the public ``tournament_survivors`` / ``tournament_merge`` over the first pass, the later
  round(s) through ``scorer.score`` on the survivors (what ``cross_window="tournament"`` does);
* ``pieces``: a prepared context (or call) with ``cross_window="pieces"``;
* ``per_token`` (a core strategy: each chunk's sum over its prompt tokens) and ``sqrt_len`` (over their
  square root, a milder length prior): length bias, a sum over a chunk's tokens against a mean;
* ``one_pass`` (``--one-pass``): the same input in one forward pass (Qwen's 32k window), the ceiling
  windowing is measured against.

Cost is counted, not timed: prompt tokens run through the model per question (prefix passes and tails,
through a counting :class:`ForwardEngine`), against one pass over the input. Recall@k per strategy,
BM25 (bm25s over the pool) and dense (all-MiniLM-L6-v2), paired randomization tests of each strategy
against BM25 and dense.

    .venv/bin/python -m benchmarks run long-context-hotpotqa --pools 5 --pool-size 10 --threads 1
    .venv/bin/python -m benchmarks run long-context-hotpotqa --pools 5 --merge 6 --threads 1
    .venv/bin/python -m benchmarks run long-context-scifact --limit 5 --threads 1
    .venv/bin/python -m benchmarks run long-context-hotpotqa --model qwen --pools 2 --window 8192 --one-pass
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks import harness as H
from benchmarks import methods as M

VIEWS = ("per_window", "window_z", "window_share", "overlap", "overlap+z", "per_token", "sqrt_len")
ALL_STRATEGIES = (*VIEWS, "tournament", "pieces")


@dataclass
class Pool:
    """One long input and the questions asked over it."""

    name: str
    chunks: list[tuple[str | None, str]]
    ids: list[str]
    questions: list[tuple[str, str, set[str]]]  # (question id, question, gold chunk ids)


def hotpot_pools(data_dir: Any, start: int, pools: int, size: int, merge: int, seed: int) -> list[Pool]:
    """``pools`` pools of ``size`` consecutive questions each, paragraphs shuffled (and merged) per pool."""
    qs = H.hotpot_questions(data_dir)
    out = []
    for p in range(pools):
        group = qs[start + p * size : start + (p + 1) * size]
        if len(group) < size:
            break
        paras = [(f"{q['idx']}-{para['idx']}", para["title"], para["paragraph_text"], q["idx"], para["is_supporting"])
                 for q in group for para in q["paragraphs"]]
        rng = random.Random(seed + p)
        rng.shuffle(paras)
        gold_para = {q["idx"]: {pid for pid, _, _, qid, sup in paras if qid == q["idx"] and sup} for q in group}
        if merge <= 1:
            chunks: list[tuple[str | None, str]] = [(t, x) for _, t, x, _, _ in paras]
            ids = [pid for pid, _, _, _, _ in paras]
            members = [[pid] for pid in ids]
        else:
            chunks, ids, members, i = [], [], [], 0
            while i < len(paras):
                part = paras[i : i + rng.randint(1, merge)]
                # titled by its first paragraph (a None title is not a valid chunk); the others keep theirs inline
                chunks.append((part[0][1], "\n\n".join([part[0][2], *(f"{t}\n{x}" for _, t, x, _, _ in part[1:])])))
                ids.append(f"c{len(ids)}")
                members.append([pid for pid, _, _, _, _ in part])
                i += len(part)
        gold = {q["idx"]: {cid for cid, m in zip(ids, members, strict=True) if gold_para[q["idx"]] & set(m)}
                for q in group}
        out.append(Pool(f"q{start + p * size}", chunks, ids, [(q["idx"], q["question"], gold[q["idx"]]) for q in group]))
    return out


def scifact_pools(data_dir: Any, limit: int, only: Sequence[str] = ()) -> list[Pool]:
    """One pool per SciFact test query whose top-100 holds a relevant abstract (else every method scores 0):
    its BM25 top-100 abstracts, BM25 order. ``only``: these query ids (``q3`` or ``3``), else the first ``limit``."""
    beir, cands = H.scifact_test(data_dir)
    wanted = {q.removeprefix("q") for q in only}
    out = []
    for qid in sorted(cands, key=lambda q: int(q) if q.isdigit() else q):
        if qid not in beir.qrels or (wanted and qid not in wanted):
            continue
        ids = [d for d, _ in cands[qid]]
        gold = {d for d, r in beir.qrels[qid].items() if r > 0}
        if not gold & set(ids):
            continue
        chunks: list[tuple[str | None, str]] = [beir.corpus[d] for d in ids]
        out.append(Pool(f"q{qid}", chunks, ids, [(qid, beir.queries[qid], gold)]))
        if len(out) >= limit:
            break
    return out


def counting_engine(base: Any) -> Any:
    """A :class:`ForwardEngine` that counts the prompt tokens it runs (prefix passes and tails)."""
    from qr_integrations.core.engine import ForwardEngine

    class Counting(ForwardEngine):
        def __init__(self) -> None:
            super().__init__(base.loaded, base.num_threads)
            self.prefix_tokens = 0
            self.tail_tokens = 0
            self._lock = threading.Lock()

        def prepare(self, prefix_ids: Any, plan: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.prefix_tokens += len(prefix_ids) + len(kwargs.get("shared_ids") or ())
            return super().prepare(prefix_ids, plan, **kwargs)

        def attend(self, prefix: Any, span_ids: Any) -> Any:
            with self._lock:
                self.tail_tokens += len(span_ids) - len(prefix.shared_ids)
            return super().attend(prefix, span_ids)

        def total(self) -> int:
            return self.prefix_tokens + self.tail_tokens

    return Counting()


def views(att: Any) -> dict[str, list[float]]:
    """The strategies that are views of one ``cross_window="overlap"`` result (no further pass)."""
    first = replace(att, layouts=att.layouts[:1], cross_window="per_window")
    per_window = first.scores()
    tokens = first.chunk_tokens()
    return {
        "per_window": per_window,
        "window_z": replace(first, cross_window="window_z").scores(),
        "window_share": replace(first, cross_window="window_share").scores(),
        "overlap": replace(att, cross_window="overlap").scores(),
        "overlap+z": replace(att, cross_window="window_z").scores(),
        "per_token": replace(first, cross_window="per_token").scores(),
        "sqrt_len": [s / max(n, 1) ** 0.5 for s, n in zip(per_window, tokens, strict=True)],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = H.common_parser(__doc__.splitlines()[0], limit=5)
    p.add_argument("--task", choices=["hotpotqa", "scifact"], default="hotpotqa")
    p.add_argument("--start", type=int, default=50, help="first HotpotQA question (heads were detected on 0-49)")
    p.add_argument("--pools", type=int, default=5, help="HotpotQA pools")
    p.add_argument("--pool-size", type=int, default=10, help="HotpotQA questions per pool (10 paragraphs each)")
    p.add_argument("--merge", type=int, default=1, help="HotpotQA: group paragraphs into chunks of 1..N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--queries", default="", help="SciFact: comma-separated query ids to run (default: the first --limit)")
    p.add_argument("--window", type=int, default=None, help="max_context_tokens (default: the model's window)")
    p.add_argument("--strategies", default=",".join(ALL_STRATEGIES), help="comma-separated subset of " + ",".join(ALL_STRATEGIES))
    p.add_argument("--one-pass", action="store_true", help="also score each input in one pass (window = model's)")
    p.add_argument("--from-records", nargs="+", default=None, metavar="FILE[@START]",
                   help="report from the per-question records runs wrote (benchmarks/.cache/<name>.jsonl); "
                        "@START: the --start of that run")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    name = args.out or (f"long_context_{args.task}{'_merge' + str(args.merge) if args.merge > 1 else ''}_"
                        f"{H.model_tag(args.model)}")
    if args.from_records:
        # each FILE[@START]: the records of one run, whose pools were built from question START (default --start)
        recs, meta, id_map = [], [], {}
        for spec in args.from_records:
            path, _, at = spec.partition("@")
            start = int(at) if at else args.start
            built = (hotpot_pools(args.data_dir, start, args.pools, args.pool_size, args.merge, args.seed)
                     if args.task == "hotpotqa" else scifact_pools(args.data_dir, args.limit, args.queries.split(',') if args.queries else ()))
            rename = {f"pool{i}": pl.name for i, pl in enumerate(built)}  # runs before pools were named q<start>
            id_map.update({pl.name: pl.ids for pl in built})
            for r in H.read_jsonl(Path(path)):
                r["pool"] = rename.get(r["pool"], r["pool"])
                if r.get("kind") == "pool":
                    meta.append(r)
                elif r.get("kind") == "question":
                    recs.append(r)
        # records of inputs the current pool rules leave out (a SciFact query without a relevant abstract in
        # its top-100, kept by runs before that rule) are dropped
        recs = [r for r in recs if r["pool"] in id_map]
        meta = [m for m in meta if m["pool"] in id_map]
        cost_saved: dict[str, list[int]] = {}
        for r in recs:
            for k, v in r["tokens"].items():
                cost_saved.setdefault(k, []).append(v)
        done = {r["pool"] for r in recs}
        return report(args, recs, [m for m in meta if m["pool"] in done], cost_saved,
                      args.strategies.split(","), meta[0]["heads_note"], H.model_tag(args.model), name, id_map)
    log_path = H.CACHE_DIR / f"{name}.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("", encoding="utf-8")

    from qr_integrations import QRScorer
    from qr_integrations.core.aggregate import tournament_merge, tournament_survivors

    strategies = [s for s in args.strategies.split(",") if s]
    unknown = sorted(set(strategies) - set(ALL_STRATEGIES))
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; choose from {list(ALL_STRATEGIES)}")
    model_tag = H.model_tag(args.model)
    model = H.resolve_model(args.model)
    layout = "reversed" if args.task == "scifact" else "input"
    probe = QRScorer(model, device="cpu", num_threads=args.threads)
    hs, heads_note = H.pick_heads(probe, args.heads)
    heads = H.head_set_string(hs)

    def make(cross_window: str, window: int | None = args.window) -> Any:
        s = QRScorer(model, heads=heads, device="cpu", num_threads=args.threads, max_context_tokens=window,
                     cross_window=cross_window, layout=layout)
        s.engine = counting_engine(s.engine)
        return s

    overlap_s = make("overlap" if {"overlap", "overlap+z"} & set(strategies) else "per_window")
    tourn_s = make("tournament")
    pieces_s = make("pieces") if "pieces" in strategies else None
    one_s = make("per_window", None) if args.one_pass else None
    dense = M.Dense()

    if args.task == "hotpotqa":
        pools = hotpot_pools(args.data_dir, args.start, args.pools, args.pool_size, args.merge, args.seed)
    else:
        pools = scifact_pools(args.data_dir, args.limit, args.queries.split(',') if args.queries else ())
    if not pools:
        raise SystemExit("no pools: check --start/--pools/--pool-size against the 100 HotpotQA questions")

    records: list[dict[str, Any]] = []
    pool_info: list[dict[str, Any]] = []
    cost: dict[str, list[int]] = {}  # prompt tokens per question, per strategy (one pass: per_window)
    bar = H.progress(range(sum(len(pl.questions) for pl in pools)), desc=f"long {args.task} {model_tag}",
                     disable=args.no_progress)
    tick = iter(bar)
    for pool in pools:
        texts = [f"{t}\n{x}" if t else x for t, x in pool.chunks]
        n_q = len(pool.questions)
        shared = args.task == "hotpotqa"  # one prepared context answers every question of a pool
        ctxs: dict[str, Any] = {}
        prep: dict[str, int] = {}
        if shared:
            for strategy, sc in (("overlap", overlap_s), ("pieces", pieces_s), ("one_pass", one_s)):
                if sc is None:
                    continue
                before = sc.engine.total()
                ctxs[strategy] = sc.context(pool.chunks)
                prep[strategy] = sc.engine.total() - before
        info = {"pool": pool.name, "chunks": len(pool.chunks), "questions": n_q,
                "chunk_tokens": sum(probe.count_tokens(t) for t in texts)}
        for qid, question, gold in pool.questions:
            rec: dict[str, Any] = {"qid": qid, "pool": pool.name, "gold": sorted(gold), "scores": {}}
            spent: dict[str, int] = {}
            e = overlap_s.engine
            before = e.total()
            att = ctxs["overlap"].head_attention(question) if shared else overlap_s.head_attention(question, pool.chunks)
            both_passes = e.total() - before + (prep["overlap"] // n_q if shared else 0)
            got = views(att)
            n_passes = len(att.layouts)
            first_tokens = both_passes if n_passes == 1 else None
            info["windows"] = len(att.layouts[0])
            info["prompt_tokens_one_pass"] = sum(w.vectors.shape[1] for w in att.layouts[0])
            for v in VIEWS:
                if v in strategies:
                    rec["scores"][v] = got[v]
            for v in ("per_window", "window_z", "window_share", "per_token", "sqrt_len"):
                spent[v] = first_tokens if first_tokens is not None else both_passes // 2
            spent["overlap"] = spent["overlap+z"] = both_passes
            if "tournament" in strategies:
                first = replace(att, layouts=att.layouts[:1], cross_window="tournament")
                scores = first.scores()
                survivors = tournament_survivors(first, scores)
                before = tourn_s.engine.total()
                if survivors is None:
                    rec["scores"]["tournament"] = scores
                else:
                    later = tourn_s.score(question, [pool.chunks[i] for i in survivors])
                    rec["scores"]["tournament"] = tournament_merge(scores, survivors, later)
                    rec["survivors"] = len(survivors)
                spent["tournament"] = spent["per_window"] + tourn_s.engine.total() - before
            if pieces_s is not None:
                before = pieces_s.engine.total()
                rec["scores"]["pieces"] = (ctxs["pieces"].score(question) if shared
                                           else pieces_s.score(question, pool.chunks))
                spent["pieces"] = pieces_s.engine.total() - before + (prep["pieces"] // n_q if shared else 0)
            if one_s is not None:
                before = one_s.engine.total()
                rec["scores"]["one_pass"] = (ctxs["one_pass"].score(question) if shared
                                             else one_s.score(question, pool.chunks))
                spent["one_pass"] = one_s.engine.total() - before + (prep["one_pass"] // n_q if shared else 0)
            rec["scores"]["bm25"] = M.bm25_scores(question, texts)
            rec["scores"]["dense"] = dense.scores(question, texts)
            rec["tokens"] = spent
            for k, v in spent.items():
                cost.setdefault(k, []).append(v)
            records.append(rec)
            with log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"kind": "question", **rec}) + "\n")
            next(tick, None)
        for c in ctxs.values():
            c.close()
        pool_info.append(info)
        with log_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"kind": "pool", "heads_note": heads_note, **info}) + "\n")
    bar.close()
    return report(args, records, pool_info, cost, strategies, heads_note, model_tag, name)


def report(args: Any, records: Sequence[dict[str, Any]], pool_info: Sequence[dict[str, Any]],
           cost: dict[str, list[int]], strategies: Sequence[str], heads_note: str, model_tag: str,
           name: str, id_map: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Tables, paired tests, plot and result files (``id_map``: chunk ids per pool, when already built)."""
    qrels = {r["qid"]: dict.fromkeys(r["gold"], 1) for r in records}
    pool_ids = {r["pool"]: r for r in records}
    ids_of: dict[str, list[str]] = dict(id_map or {})
    if id_map:
        pools: list[Pool] = []
    elif args.task == "hotpotqa":
        pools = hotpot_pools(args.data_dir, args.start, args.pools, args.pool_size, args.merge, args.seed)
    else:
        pools = scifact_pools(args.data_dir, args.limit, args.queries.split(',') if args.queries else ())
    for pl in pools:
        if pl.name in pool_ids:
            ids_of[pl.name] = pl.ids
    methods = list(records[0]["scores"])
    runs = {m: {r["qid"]: H.ranking_to_run(ids_of[r["pool"]], r["scores"][m]) for r in records} for m in methods}
    metrics = ["recall@2", "recall@5", "recall@10", "ndcg@10"] if args.task == "hotpotqa" else [
        "recall@5", "recall@10", "ndcg@10"]
    key = "recall@5"
    one = sum(cost["per_window"]) / len(cost["per_window"])
    rows, means = [], {}
    for m in methods:
        mean, _ = H.evaluate(qrels, runs[m], metrics)
        means[m] = mean
        tok = cost.get(m)
        ratio: Any = (sum(tok) / len(tok)) / one if tok else "-"
        rows.append([m, *[mean[x] for x in metrics], ratio])
    tests = {}
    bases = ["bm25", "dense", *(["per_window"] if "per_window" in methods else [])]
    for base in bases:
        for m in methods:
            if m in ("bm25", "dense", base):
                continue
            tests[f"{m} vs {base}"] = H.paired_tests(qrels, {m: runs[m], base: runs[base]}, m, key)[base]

    def cell(pair: str) -> str:
        t = tests.get(pair)
        return "-" if t is None else f"{t['mean_diff']:+.3f}, {H.format_p(t['p'])} ({'/'.join(map(str, t['wins_ties_losses']))})"

    test_rows = [[m, *(cell(f"{m} vs {b}") for b in bases)] for m in methods if m not in ("bm25", "dense")]
    tokens = [i["chunk_tokens"] for i in pool_info]
    firsts = sorted(int(i["pool"][1:]) for i in pool_info if str(i["pool"])[1:].isdigit())
    span = (f"{firsts[0]}-{firsts[-1] + args.pool_size - 1}" if firsts else
            f"{args.start}-{args.start + len(pool_info) * args.pool_size - 1}")
    what = (f"HotpotQA pools of {args.pool_size} questions (questions {span}), {'chunks of 1-' + str(args.merge) + ' paragraphs' if args.merge > 1 else 'one paragraph per chunk'}"
            if args.task == "hotpotqa" else (f"SciFact test queries over their BM25 top-100, BM25 order, layout reversed "
                                          f"(queries {', '.join(str(i['pool'])[1:] for i in pool_info)}: each with a "
                                          "relevant abstract in its top-100)"))
    header = (f"{what}; {len(records)} questions over {len(pool_info)} inputs of {min(tokens)}-{max(tokens)} chunk tokens "
              f"({pool_info[0]['chunks']} chunks, {'/'.join(str(i.get('windows')) for i in pool_info)} windows of "
              f"{args.window or 'the model'}'s tokens); {model_tag}, {heads_note}. Cost: prompt tokens run per "
              "question (prefix passes + tails; a prepared context's passes shared by its questions) / per_window's.")
    table = (header + "\n\n" + H.markdown_table(["method", *metrics, "cost x one pass"], rows)
             + f"\n\nPaired randomization tests on {key} ({len(records)} questions): mean difference, p, wins/ties/losses\n\n"
             + H.markdown_table(["strategy", *(f"vs {b}" for b in bases)], test_rows))
    payload = {"task": args.task, "model": model_tag, "heads": heads_note, "pools": list(pool_info),
               "means": means, "paired_tests": tests, "cost_tokens": cost, "records": list(records),
               "strategies": list(strategies)}
    bars = {m: {x: means[m][x] for x in metrics} for m in methods}
    return H.publish(name, payload, table, bars, f"long {args.task}: {model_tag}", "score")
