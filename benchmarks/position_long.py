"""Position corrections on long inputs: 100-paragraph HotpotQA pools, read whole or through a shortlist.

Each pool holds the paragraphs of 10 consecutive HotpotQA questions, shuffled (``long_context.hotpot_pools``,
seed 0 per run of 3 pools); every question is asked over its whole pool, and its gold chunks are its 2
supporting paragraphs. A pool is two or three windows of the embedded model's 8,192 tokens. Splits: ``dev``
= pools of questions 0-29 (the corrections for long inputs are chosen here), ``test`` = 50-79 (reported).

Two captures per question, both with the library's own calls and both cached under
``benchmarks/.cache/long_pools/``; every setting below is derived from them:

* the whole pool: ``scorer.context(pool).head_attention(q)`` with 2 orders, the null query subtracted and
  no prior (``cross_window="overlap"``: each order read in two coverings);
* a shortlist: the pool cut to a prior's best 20 paragraphs (``--shortlist-prior bm25|dense``, in pool
  order), read by ``scorer.head_attention`` with 2 orders: what ``shortlist=20`` reads.

Settings reported: BM25, dense (all-MiniLM-L6-v2), QRHead's own scoring over the pool, the earlier defaults
(BM25 prior 0.7) over the pool, the pool with the dense prior (at QRHead weights 0.7 and 0.5, and at the
defaults' weight for an input read in several windows: what ``shortlist=None`` gives), and each shortlist with
``divide``, 2 orders and its prior fused at QRHead weight 0.7 or 0.5 (the dense shortlist at 0.5 is the
scorer's default). Recall@5/@10/@2 and paired randomization tests against BM25 and dense.

``--check`` compares one derived shortlist setting, and the whole pool at the defaults with ``shortlist=None``,
with ``QRScorer(...).score`` on the first question.
``--records FILE`` writes each question's scores under QRHead's own scoring, the earlier defaults (key
``defaults``: BM25 prior 0.7), the dense shortlist at weight 0.5 (key ``dense_shortlist``: today's defaults),
BM25 and dense, for ``benchmarks.long_generate`` to trim by and answer from::

    .venv/bin/python -m benchmarks run position-long --split test --shortlist-prior dense --threads 1 \\
        --records benchmarks/.cache/position_long_test_records.jsonl
    .venv/bin/python -m benchmarks run trim-generate-long --threads 1 --no-full --truncate 0 \\
        --methods own,defaults,dense_shortlist --records benchmarks/.cache/position_long_test_records.jsonl@50
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from benchmarks import harness as H
from benchmarks.long_context import hotpot_pools
from qr_integrations import QRScorer, ScorerConfig
from qr_integrations.core.fusion import weighted_fusion
from qr_integrations.core.pipeline import chunk_texts
from qr_integrations.core.prior import prior_scores, shortlist_indices, spread_shortlist

SPLITS = {"dev": 0, "test": 50}
POOLS, POOL_SIZE, SHORTLIST = 3, 10, 20
CAPTURE = {"orders": 2, "calibration": "subtract", "prior": "none", "layout": "input"}


# the defaults of releases before the dense prior (divide, 2 orders, BM25 prior 0.7), read whole
BM25_PRIOR = "BM25 prior 0.7, whole pool (the earlier defaults)"
# the scorer's defaults now (divide, 2 orders, dense prior 0.5, shortlist 20), chosen on the dev split
SHIPPED = f"dense prior, shortlist {SHORTLIST}, weight 0.5"
# the whole pool read at the defaults but for the shortlist (shortlist=None, as a prepared context over a
# long input reads it): the dense prior at the defaults' weight for an input read in several windows
WHOLE = "dense prior, whole pool, the defaults' weights (shortlist=None)"

# --records: the settings a trim-then-generate run compares, by the short names long_generate takes
RECORDED = {"own": "QRHead's own scoring, whole pool", "defaults": BM25_PRIOR,
            "dense_shortlist": SHIPPED, "bm25": "BM25", "dense": "dense",
            "bm25_half": "divide K=2 +bm25@0.5"}


def capture_pool(scorer: QRScorer, pool: Any, cache: Path) -> list[Any]:
    path = cache / f"{pool.name}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)["atts"]
    with scorer.context(pool.chunks, show_progress=False) as ctx:
        atts = [ctx.head_attention(q).compact() for _, q, _ in pool.questions]
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"pool": pool, "atts": atts}, path)
    return atts


def capture_shortlists(scorer: QRScorer, pool: Any, prior: str, cache: Path) -> list[dict[str, Any]]:
    path = cache / f"{pool.name}_shortlist_{prior}{SHORTLIST}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)["rows"]
    texts = texts_of(pool)
    rows = []
    for qid, q, _ in H.progress(pool.questions, desc=f"{pool.name} shortlists"):
        p = prior_scores(q, texts, prior)
        keep = shortlist_indices(p, SHORTLIST)
        rows.append({"qid": qid, "keep": keep, "att": scorer.head_attention(q, [pool.chunks[i] for i in keep]).compact()})
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"pool": pool, "rows": rows}, path)
    return rows


def texts_of(pool: Any) -> list[str]:
    return chunk_texts(pool.chunks)


def view(att: Any, calibration: str, passes: int | None = None) -> list[float]:
    layouts = att.layouts if passes is None else att.layouts[:passes]
    return dataclasses.replace(att, layouts=layouts, calibration=calibration).scores("all", 2.0)


def main(argv: list[str] | None = None) -> None:
    p = H.common_parser("position corrections on 100-paragraph pools: whole, or through a shortlist")
    p.add_argument("--split", choices=list(SPLITS), default="dev", help="dev chooses, test reports")
    p.add_argument("--shortlist-prior", default="bm25,dense", help="priors whose shortlists are captured")
    p.add_argument("--check", action="store_true", help="check one derived shortlist setting against QRScorer.score")
    p.add_argument("--records", type=Path, default=None,
                   help="also write per-question scores as benchmarks.long_generate records (trim, then answer)")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    pools = hotpot_pools(args.data_dir, SPLITS[args.split], POOLS, POOL_SIZE, 1, 0)
    scorer = QRScorer(H.resolve_model(args.model), heads=args.heads, device="cpu", num_threads=args.threads, **CAPTURE)
    cache = H.CACHE_DIR / "long_pools"
    priors = [x for x in args.shortlist_prior.split(",") if x]
    scores: dict[str, dict[str, list[float]]] = {}
    qrels: dict[str, dict[str, int]] = {}
    ids: dict[str, list[str]] = {}

    records: list[dict[str, Any]] = []

    def add(method: str, key: str, s: list[float]) -> None:
        scores.setdefault(method, {})[key] = [float(x) for x in s]

    for pool in H.progress(pools, desc=f"pools ({args.split})", disable=args.no_progress):
        atts = capture_pool(scorer, pool, cache)
        lists = {prior: capture_shortlists(scorer, pool, prior, cache) for prior in priors}
        texts = texts_of(pool)
        for n, ((qid, q, gold), att) in enumerate(zip(pool.questions, atts, strict=True)):
            key = f"{pool.name}-{qid}"
            qrels[key], ids[key] = dict.fromkeys(gold, 1), pool.ids
            bm25, dense = prior_scores(q, texts, "bm25"), prior_scores(q, texts, "dense")
            assert bm25 is not None and dense is not None
            add("BM25", key, bm25)
            add("dense", key, dense)
            add("QRHead's own scoring, whole pool", key, view(att, "subtract", 2))
            divided = view(att, "divide")
            add(BM25_PRIOR, key, weighted_fusion(divided, bm25, 0.7))
            add("dense prior, whole pool", key, weighted_fusion(divided, dense, 0.7))
            # the candidate settings of position_bias (calibration x orders x BM25 prior), over the whole pool
            per_order = len(att.layouts) // CAPTURE["orders"]  # the coverings of one order
            for cal in ("subtract", "divide"):
                for k in (1, 2):
                    base = view(att, cal, per_order * k)
                    add(f"{cal} K={k}", key, base)
                    for w in (0.7, 0.5):
                        add(f"{cal} K={k} +bm25@{w}", key, weighted_fusion(base, bm25, w))
            for w in (0.7, 0.5):  # the option prior="dense" on the defaults' reading
                add(f"divide K=2 +dense@{w}", key, weighted_fusion(divided, dense, w))
            # what shortlist=None gives at the other defaults: QRHead's share for as many windows as it read
            add(WHOLE, key, weighted_fusion(divided, dense, ScorerConfig().weight_for(att.windows)))
            for prior, rows in lists.items():
                row = rows[n]
                full = spread_shortlist(view(row["att"], "divide"), row["keep"], len(texts))
                second = bm25 if prior == "bm25" else dense
                for w in (0.7, 0.5):
                    add(f"{prior} prior, shortlist {SHORTLIST}, weight {w}", key, weighted_fusion(full, second, w))
            records.append({"kind": "question", "pool": pool.name, "qid": qid, "gold": sorted(gold),
                            "scores": {short: scores[method][key] for short, method in RECORDED.items()
                                       if key in scores.get(method, {})}})

    if args.records is not None:
        args.records.parent.mkdir(parents=True, exist_ok=True)
        args.records.write_text("".join(json.dumps(r) + "\n" for r in records))
        print(f"wrote {len(records)} question records to {args.records}")

    if args.check and priors:
        pool, prior = pools[0], priors[0]
        _, q, _ = pool.questions[0]
        own = QRScorer(H.resolve_model(args.model), heads=args.heads, device="cpu", num_threads=args.threads,
                       prior=prior, shortlist=SHORTLIST)  # the other settings at their defaults (weight 0.5)
        direct = own.score(q, pool.chunks)
        derived = scores[f"{prior} prior, shortlist {SHORTLIST}, weight {own.config.prior_weight}"][
            f"{pool.name}-{pool.questions[0][0]}"]
        gap = max(abs(a - b) for a, b in zip(direct, derived, strict=True))
        print(f"derived vs QRScorer(prior={prior!r}, shortlist={SHORTLIST}).score: max |diff| {gap:.2e}")
        assert gap < 1e-4, "derived scores differ from the scorer's own"
        if prior == "dense":  # and the whole pool, as shortlist=None reads it
            whole = QRScorer(H.resolve_model(args.model), heads=args.heads, device="cpu", num_threads=args.threads,
                             shortlist=None)
            direct = whole.score(q, pool.chunks)
            derived = scores[WHOLE][f"{pool.name}-{pool.questions[0][0]}"]
            gap = max(abs(a - b) for a, b in zip(direct, derived, strict=True))
            print(f"derived vs QRScorer(shortlist=None).score: max |diff| {gap:.2e}")
            assert gap < 1e-4, "derived whole-pool scores differ from the scorer's own"

    runs = {m: {k: H.ranking_to_run(ids[k], s) for k, s in per.items()} for m, per in scores.items()}
    metrics = ["recall@5", "recall@10", "recall@2"]
    rows, results, tests = [], {}, {}
    for m, run in runs.items():
        mean, _ = H.evaluate(qrels, run, metrics)
        results[m] = mean
        if m not in ("BM25", "dense"):
            tests[m] = H.paired_tests(qrels, {k: runs[k] for k in (m, "BM25", "dense")}, m, "recall@5")
        t = tests.get(m, {})
        rows.append([m, *[mean[x] for x in metrics],
                     *[f"{t[o]['mean_diff']:+.3f}, {H.format_p(t[o]['p'])}" if o in t else "" for o in ("BM25", "dense")]])
    table = H.markdown_table(["method", *metrics, "Recall@5 vs BM25", "vs dense"], rows)
    name = args.out or f"position_long_{args.split}_{H.model_tag(args.model)}"
    payload = {"split": args.split, "questions": len(qrels), "pools": [p.name for p in pools], "metrics": metrics,
               "results": results, "tests": tests, "shortlist": SHORTLIST}
    H.write_results(name, payload, table)
    print(table)
