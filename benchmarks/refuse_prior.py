"""Other prior weights for SciFact inputs past one window, from the defaults' cached scores (no re-scoring).

The defaults fuse ``w * minmax(QRHead) + (1 - w) * minmax(dense prior)`` (``w = prior_weight``, QRHead's
share, 0.5), so ``minmax(QRHead) = (fused - (1 - w) * minmax(prior)) / w`` is recovered exactly from a
``position-scifact --shipped`` cache (the script prints how far the recovered scores' ends are from 0 and 1:
0.0 when the prior matches) and fused again at each weight by the scorer's own ``fuse_prior``. Only the inputs
read in several windows, with cached scores, are used.

QRHead's part is recovered from the scores cached at one weight for every input (``prior_weight_long=None``:
0.5 past one window too, as every default had before ``prior_weight_long``) or, where those are missing, from
the scores cached at the defaults (``prior_weight_long``'s 0.3); where both are cached the two recoveries are
compared. Each weight is tested (paired, nDCG@10) against one weight and against the defaults' weight; BM25
over the same abstracts is printed beside them (weight 0 is the dense prior's own ranking). Run, after scoring
them (at either weight; ``LIMIT`` 0 takes the whole split)::

    .venv/bin/python -m benchmarks run position-scifact --split SPLIT --limit 100 --windows several \
        --threads 1 --shipped --also prior_weight_long=None
    .venv/bin/python -m benchmarks run position-scifact --split dev --start 100 --windows several \
        --threads 1 --shipped
    PYTHONPATH=. .venv/bin/python benchmarks/refuse_prior.py SPLIT LIMIT
"""

from __future__ import annotations

import sys
import types

from benchmarks import harness as H
from benchmarks import position_bias as P
from qr_integrations import QRScorer
from qr_integrations.core.fusion import minmax
from qr_integrations.core.prior import bm25_scores, fuse_prior
from qr_integrations.core.prompt import normalize_chunks

WEIGHTS = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0]


def main(split: str, limit: int) -> None:
    H.setup_torch(1)
    items = P.DATASETS["scifact"](H.resolve_data_dir(H.DEFAULT_DATA_DIR), split)
    items = items[:limit] if limit else items
    # the scores may be cached at one weight (prior_weight_long=None) or at the defaults' (0.3 past one window):
    # QRHead's part is recovered from either, preferring one weight (the scores every earlier run cached)
    one = QRScorer(H.resolve_model("smollm2"), device="cpu", num_threads=1, prior_weight_long=None)
    shipped = QRScorer(H.resolve_model("smollm2"), device="cpu", num_threads=1)
    pipe, w0 = one.pipeline, one.config.weight_for(2)
    items = [it for it in items if P.several_windows(one, it)]
    args = types.SimpleNamespace(cached_only=True, reverse=False, no_progress=True)
    cache = H.CACHE_DIR / "position" / "smollm2" / "shipped_scifact.jsonl"
    by_weight = [(sc.config.weight_for(2), P.cached_scores(sc, items, cache, args, "cached")) for sc in (one, shipped)]
    qrels: dict[str, dict[str, int]] = {}
    runs: dict[str, dict[str, dict[str, float]]] = {}
    worst, agree, both = 0.0, 0.0, 0
    for n, it in enumerate(items):
        read, _ = pipe.read_chunks(normalize_chunks(it["chunks"]))
        prior = pipe.prior(it["query"], read)
        assert prior is not None
        parts = []
        for w, found in by_weight:
            fused = found[n]
            if fused is None:
                continue
            if len(read) != len(fused):
                raise SystemExit(f"query {it['qid']} has repeated chunks: this re-fusion does not handle them")
            parts.append([(f - (1 - w) * p) / w for f, p in zip(fused, minmax(prior), strict=True)])
        if not parts:
            continue
        if len(parts) == 2:  # both cached: the two recoveries must agree
            both += 1
            agree = max(agree, max(abs(a - b) for a, b in zip(*parts, strict=True)))
        qr = parts[0]
        worst = max(worst, abs(min(qr)), abs(max(qr) - 1))
        qrels[it["qid"]] = {str(i): int(g) for i, g in enumerate(it["gold"]) if g}
        for w in WEIGHTS:
            mixed = fuse_prior(qr, prior, w)
            runs.setdefault(f"w={w}", {})[it["qid"]] = H.ranking_to_run([str(i) for i in range(len(qr))], mixed)
    pairs = list(qrels)
    if both:
        print(f"{both} inputs cached at both weights: QRHead's parts recovered from each agree within {agree:.1e}")
    print(f"{split}: {len(pairs)} inputs past one window with cached scores; recovered ends off by {worst:.1e}")
    kept = [it for it in items if it["qid"] in qrels]
    runs["BM25"] = {it["qid"]: H.ranking_to_run([str(i) for i in range(len(it["chunks"]))], bm25_scores(
        it["query"], [f"{t}\n{x}" if t else x for t, x in it["chunks"]])) for it in kept}
    w1 = shipped.config.weight_for(2)
    tests = H.paired_tests(qrels, runs, f"w={w0}", "ndcg@10")
    against_shipped = H.paired_tests(qrels, runs, f"w={w1}", "ndcg@10")
    for name, run in runs.items():
        mean, _ = H.evaluate(qrels, run, ["ndcg@10"])
        vs = "".join(f"  against w={w}: {-t['mean_diff']:+.3f} ({H.format_p(t['p'])}, "
                     + "{2}/{1}/{0} better/level/worse)".format(*t["wins_ties_losses"])
                     for w, t in ((w0, tests.get(name)), (w1, against_shipped.get(name))) if t is not None)
        print(f"{name}  nDCG@10 {mean['ndcg@10']:.3f} ({mean['ndcg@10']:.5f}){vs}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
