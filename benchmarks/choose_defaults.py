"""The rule that picks the defaults for chunks in no retriever's order, applied to the dev-split results.

Candidates: every calibration x orders x BM25-prior setting of :mod:`benchmarks.position_bias` at no more than
``--max-passes`` forward passes. Each is scored by the mean of four dev-split metrics, each from its own
result file (run those first, with ``--split dev``):

* HotpotQA, 20 shuffled paragraphs: Recall@5 (``position_hotpot_dev_<model>``);
* the same, one line each: Recall@5 (``position_hotpot_line_dev_<model>``);
* SciFact, BM25's top 20 shuffled: nDCG@10 (``position_scifact_dev_<model>``);
* 100-paragraph pools read whole: Recall@5 (``position_long_dev_<model>``).

The best mean wins; ties go to fewer passes, then to the current default. The test splits take no part.
Candidates fuse BM25, the dense prior (``divide K=2 +dense@w``) or nothing; this picks the scorer's
defaults. ``--priors bm25`` is the rule as first set (before the SciFact dev split was run), when the dense
prior was not yet a candidate.

    .venv/bin/python -m benchmarks run position-choose
    .venv/bin/python -m benchmarks run position-choose --priors bm25
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks import harness as H

SOURCES = (("hotpot paragraphs R@5", "position_hotpot_dev_{tag}", "recall@5"),
           ("hotpot one-line R@5", "position_hotpot_line_dev_{tag}", "recall@5"),
           ("scifact nDCG@10", "position_scifact_dev_{tag}", "ndcg@10"),
           ("long pools R@5", "position_long_dev_{tag}", "recall@5"))
CURRENT = "divide K=2 +dense@0.5"


def passes(name: str) -> int:
    """Forward passes of a setting named like ``divide K=2 +bm25@0.5`` (K orders)."""
    return int(name.split("K=")[1].split()[0])


def choose(results: dict[str, dict[str, float]], max_passes: int,
           priors: tuple[str, ...] = ("bm25",)) -> list[tuple[str, float, dict[str, float]]]:
    """Candidates best first: ``(name, mean, per-source metric)``; ``results`` maps source -> setting -> metric.
    ``priors``: the fused priors a candidate may use (besides none).

    Example:
        >>> r = {"a": {"divide K=1": 0.5, "divide K=2": 0.7, "BM25": 0.9}, "b": {"divide K=1": 0.9, "divide K=2": 0.7}}
        >>> [(n, m) for n, m, _ in choose(r, 2)]
        [('divide K=1', 0.7), ('divide K=2', 0.7)]
    """
    names = set.intersection(*(set(v) for v in results.values()))
    rows = []
    for name in names:
        prior = name.split("+")[1].split("@")[0] if "+" in name else None
        if "K=" not in name or passes(name) > max_passes or (prior is not None and prior not in priors):
            continue
        per = {src: results[src][name] for src in results}
        rows.append((name, round(sum(per.values()) / len(per), 6), per))
    return sorted(rows, key=lambda r: (-r[1], passes(r[0]), r[0] != CURRENT, r[0]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = H.common_parser(__doc__.splitlines()[0], limit=None)
    p.add_argument("--max-passes", type=int, default=2)
    p.add_argument("--priors", default="bm25,dense",
                   help="priors a candidate may fuse: bm25,dense (the rule that chose the defaults) or bm25 (the rule "
                        "as first set, before the dense prior was a candidate)")
    args = p.parse_args(argv)
    tag = H.model_tag(args.model)
    results: dict[str, dict[str, float]] = {}
    for label, name, metric in SOURCES:
        path = H.RESULTS_DIR / f"{name.format(tag=tag)}.json"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run its experiment with --split dev first (see {__name__})")
        data = json.loads(path.read_text())
        results[label] = {m: float(v[metric]) for m, v in data["results"].items() if metric in v}
    priors = tuple(x for x in args.priors.split(",") if x)
    ranked = choose(results, args.max_passes, priors)
    labels = [s[0] for s in SOURCES]
    rows = [[name, *[per[x] for x in labels], mean, passes(name)] for name, mean, per in ranked]
    for ref in ("BM25", "dense"):
        if all(ref in results[x] for x in labels):
            vals = [results[x][ref] for x in labels]
            rows.append([ref, *vals, round(sum(vals) / len(vals), 6), 0])
    table = (f"Dev-split candidates at <= {args.max_passes} passes, priors {'/'.join(priors)}, best first "
             "(mean of the four dev metrics; "
             f"ties: fewer passes, then {CURRENT}); chosen: **{ranked[0][0]}**\n\n"
             + H.markdown_table(["setting", *labels, "mean", "passes"], rows))
    payload = {"chosen": ranked[0][0], "ranking": [{"setting": n, "mean": m, **per} for n, m, per in ranked]}
    H.write_results(args.out or f"position_choice_{tag}" + ("" if priors == ("bm25", "dense") else "_" + "_".join(priors)),
                    payload, table)
    print(table)
    return payload
