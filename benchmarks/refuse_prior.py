"""Other prior weights for SciFact inputs past one window, from the defaults' cached scores (no re-scoring).

The defaults fuse ``0.5 * minmax(QRHead) + 0.5 * minmax(dense prior)`` (``prior_weight`` is QRHead's share),
so ``minmax(QRHead) = 2 * fused - minmax(prior)`` is recovered exactly from a ``position-scifact --shipped``
cache (the script prints how far the recovered scores' ends are from 0 and 1: 0.0 when the prior matches) and
re-fused at each weight. Only the inputs read in several windows, with cached scores, are used.

Run (after ``position-scifact --split SPLIT --limit 100 --windows several --threads 1 --shipped``):
    PYTHONPATH=. .venv/bin/python benchmarks/refuse_prior.py dev 100
"""

from __future__ import annotations

import sys
import types

from benchmarks import harness as H
from benchmarks import position_bias as P
from qr_integrations import QRScorer
from qr_integrations.core.fusion import minmax

WEIGHTS = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0]


def main(split: str, limit: int) -> None:
    H.setup_torch(1)
    items = P.DATASETS["scifact"](H.resolve_data_dir(H.DEFAULT_DATA_DIR), split)[:limit]
    scorer = QRScorer(H.resolve_model("smollm2"), device="cpu", num_threads=1)
    pipe = scorer.pipeline
    several = [len(pipe.coverings(P.normalize_chunks(it["chunks"]), pipe.room(it["query"]))[0]) > 1 for it in items]
    items = [it for it, s in zip(items, several, strict=True) if s]
    args = types.SimpleNamespace(cached_only=True, reverse=False, no_progress=True)
    cache = H.CACHE_DIR / "position" / "smollm2" / "shipped_scifact.jsonl"
    found = P.cached_scores(scorer, items, cache, args, "cached")
    pairs = [(it, f) for it, f in zip(items, found, strict=True) if f is not None]
    qrels = {it["qid"]: {str(i): int(g) for i, g in enumerate(it["gold"]) if g} for it, _ in pairs}
    runs: dict[str, dict[str, dict[str, float]]] = {}
    worst = 0.0
    for it, fused in pairs:
        read, _ = pipe.read_chunks(P.normalize_chunks(it["chunks"]))
        if len(read) != len(fused):
            raise SystemExit(f"query {it['qid']} has repeated chunks: this re-fusion does not handle them")
        prior = pipe.prior(it["query"], read)
        assert prior is not None
        prior = minmax(prior)
        qr = [2 * f - p for f, p in zip(fused, prior, strict=True)]
        worst = max(worst, abs(min(qr)), abs(max(qr) - 1))
        for w in WEIGHTS:
            mixed = [w * a + (1 - w) * b for a, b in zip(qr, prior, strict=True)]
            runs.setdefault(f"w={w}", {})[it["qid"]] = H.ranking_to_run([str(i) for i in range(len(qr))], mixed)
    print(f"{split}: {len(pairs)} inputs past one window with cached scores; recovered ends off by {worst:.1e}")
    tests = H.paired_tests(qrels, runs, "w=0.5", "ndcg@10")
    for name, run in runs.items():
        mean, _ = H.evaluate(qrels, run, ["ndcg@10"])
        t = tests.get(name)
        vs = "" if t is None else f"  against the default 0.5: {-t['mean_diff']:+.3f} ({H.format_p(t['p'])})"
        print(f"{name}  nDCG@10 {mean['ndcg@10']:.3f}{vs}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
