"""Position bias and its corrections, on candidates in no retriever's order.

Every input is shuffled (seeded), so the order says nothing about relevance: what a trimmed document, a
chat history or a row of a file looks like. One capture per input reads the chunks in 4 evenly spaced
rotations of that order (``QRScorer(orders=4).head_attention``, which keeps each window's null-query
attention); every correction is then derived from that one result with the library's own aggregation:

* ``calibration``: ``subtract`` (QRHead's) or ``divide`` (by the null query's mass on the chunk);
* ``orders``: 1, 2 or 4 rotations averaged (the first 1, 2 or 4 of the captured passes are exactly what
  ``QRScorer(orders=K)`` reads: rotations are evenly spaced, so K=2 is passes 0 and 2);
* ``prior``: none, or BM25 over the same chunks fused at QRHead weight 0.5 / 0.7 (``core.prior``).

Datasets (``--dataset``):

* ``hotpot``: 20 paragraphs per HotpotQA question (its 10, two of them gold, and 10 drawn from other
  questions), ``--split dev`` = questions 0-49 (defaults are chosen here), ``test`` = 50-99 (reported);
* ``hotpot_line``: the same pools, each paragraph cut to its first sentence (one line);
* ``scifact``: the BM25 top 20 of SciFact test queries with a relevant abstract among them, abstracts up to
  400 words, shuffled; ``--split test`` = from the first such query (reported), ``dev`` = from the 101st;
* ``identical``: 5 copies of a gold paragraph among 5 distractors (the spread of the copies' scores).

Reported: Recall@5/@2 (HotpotQA) or nDCG@10 (SciFact) against BM25 and dense (all-MiniLM-L6-v2) with
paired randomization tests; the mean within-query z-scored score by prompt position (5 bins); how often a
non-gold chunk written first or last reaches the top 3; the relative spread of identical chunks.

Run (one thread each; captures are cached under benchmarks/.cache/position/, so a rerun only re-reports):
    .venv/bin/python -m benchmarks run position-hotpot --split dev --limit 30 --threads 1
(``position-hotpot-line``, ``position-scifact`` and ``position-identical`` are the other datasets.)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import harness as H
from qr_integrations import QRScorer
from qr_integrations.core.prior import bm25_scores, fuse_prior, with_prior
from qr_integrations.core.prompt import normalize_chunks

CAPTURED_ORDERS = 4
SPLITS = H.HOTPOT_SPLITS
CONFIGS = [(cal, k, prior) for cal in ("subtract", "divide") for k in (1, 2, 4)
           for prior in (("none", 1.0), ("bm25", 0.7), ("bm25", 0.5))]
BASELINE = ("subtract", 1, ("none", 1.0))  # QRHead's own scoring: the scorer's defaults before this benchmark
DEFAULT_ROW = "divide K=2 +dense@0.5"  # the scorer's defaults (chosen on the dev splits, position-choose)


def config_name(cfg: tuple[str, int, tuple[str, float]]) -> str:
    cal, k, (prior, w) = cfg
    return f"{cal} K={k}" + ("" if prior == "none" else f" +bm25@{w}")


# ---------------------------------------------------------------------------------------------- capture


# ScorerConfig options added after the captures under benchmarks/.cache/position/ were made: at these values
# they change nothing, so they stay out of the cache key and the captures keep their names
LATER_OPTIONS = {"prior_model": None, "shortlist": None, "shortlist_window": False, "dedupe": True}


def capture_key(item: dict[str, Any], config: Any) -> str:
    """The capture's cache key: the query, the chunks and the scorer's configuration (as of the captures)."""
    cfg = {k: v for k, v in json.loads(config.to_json()).items() if not (k in LATER_OPTIONS and v == LATER_OPTIONS[k])}
    cfg.pop("prior_weight_long", None)  # it changes nothing in a capture (no prior); shipped_key names it where it acts
    return H.cache_key(item["query"], item["chunks"], json.dumps(cfg))


# The capture runs with prior="none", so prior_weight changes nothing in it; the dev-split captures were made
# while its default was 0.5 (and keyed so), the later ones at 0.7. Either name is read.
LEGACY_PRIOR_WEIGHTS = (0.5,)


def capture(scorer: QRScorer, item: dict[str, Any], cache: Path) -> Any:
    """The per-head attention of the item over 4 rotations (compact: chunk tokens only), cached."""
    key = capture_key(item, scorer.config)
    path = cache / f"{key}.pt"
    legacy = [cache / f"{capture_key(item, scorer.config.replace(prior_weight=w))}.pt" for w in LEGACY_PRIOR_WEIGHTS]
    for found in (path, *legacy):
        if found.is_file():
            return torch.load(found, weights_only=False)
    att = scorer.head_attention(item["query"], item["chunks"]).compact()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(att, path)
    return att


def derived_scores(att: Any, item: dict[str, Any], cfg: tuple[str, int, tuple[str, float]]) -> list[float]:
    cal, k, (prior, w) = cfg
    # layouts come order by order, each order's coverings together (two under cross_window="overlap" for an
    # input past one window): K orders are the captured orders 0, 4/K, ..., with all their coverings
    per_order = len(att.layouts) // CAPTURED_ORDERS
    step = CAPTURED_ORDERS // k
    passes = tuple(layout for r in range(0, CAPTURED_ORDERS, step)
                   for layout in att.layouts[r * per_order:(r + 1) * per_order])
    view = dataclasses.replace(att, layouts=passes, calibration=cal)
    scores = view.scores("all", 2.0)
    texts = [f"{t}\n{x}" if t else x for t, x in item["chunks"]]
    return with_prior(scores, item["query"], texts, prior, w)


# ---------------------------------------------------------------------------------------------- measures


def position_profile(scores: list[float], gold: list[int], bins: int = 5) -> list[float]:
    """Within-query z-scores of the non-gold chunks, averaged per prompt-position bin (position in the input
    order; ``bins`` = the number of chunks gives one point per position). Gold chunks are left out, so what
    remains is where a chunk is written, not what it says. ``nan`` for a bin with no non-gold chunk."""
    s = np.asarray(scores, dtype=float)
    z = (s - s.mean()) / (s.std() + 1e-12)
    n = len(s)
    out = []
    for b in range(bins):
        keep = [i for i in range(n) if i * bins // n == b and not gold[i]]
        out.append(float(z[keep].mean()) if keep else float("nan"))
    return out


def edge_in_top3(scores: list[float], gold: list[int]) -> tuple[float | None, float | None]:
    top3 = set(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:3])
    first = None if gold[0] else float(0 in top3)
    last = None if gold[-1] else float(len(scores) - 1 in top3)
    return first, last


def spread(scores: list[float], gold: list[int]) -> float:
    copies = [s for s, g in zip(scores, gold, strict=True) if g]
    top = max(abs(s) for s in copies) or 1.0
    return (max(copies) - min(copies)) / top


SHIPPED = "QRScorer() as shipped (defaults, dedupe)"
# each split's slice of the shuffled SciFact list (--start and --limit apply within it): test = the first 100
# queries (reported), dev = from the 101st on (settings are chosen there); no --start/--limit can cross
SCIFACT_SPLITS = {"dev": slice(100, None), "test": slice(0, 100)}

DATASETS = {  # --dataset -> the harness's candidate builder
    "hotpot": lambda data_dir, split: H.hotpot_shuffled(data_dir, split),
    "hotpot_line": lambda data_dir, split: H.hotpot_shuffled(data_dir, split, line=True),
    "scifact": lambda data_dir, split: H.scifact_shuffled(data_dir)[SCIFACT_SPLITS[split]],
    "identical": lambda data_dir, split: H.hotpot_identical(data_dir),
}


def main(argv: list[str] | None = None) -> None:
    p = H.common_parser("position bias and its corrections on shuffled candidates")
    p.add_argument("--dataset", choices=["hotpot", "hotpot_line", "scifact", "identical"], default="hotpot")
    p.add_argument("--split", choices=list(SPLITS), default="dev", help="dev chooses, test reports (HotpotQA questions 0-49 / 50-99; SciFact from the 101st query / the first)")
    p.add_argument("--check", action="store_true", help="check one derived config against QRScorer's own call")
    p.add_argument("--shipped", action="store_true",
                   help="no capture: only QRScorer() at its defaults, called as a user calls it, beside BM25 and dense "
                        "(cheaper: the defaults' passes only, so more queries fit)")
    p.add_argument("--reverse", action="store_true",
                   help="with --shipped: score the items last first (a second process can share the cache)")
    p.add_argument("--cached-only", action="store_true",
                   help="with --shipped: score nothing, report the items already in the cache (in --limit's range)")
    p.add_argument("--windows", choices=["any", "one", "several"], default="any",
                   help="with --shipped: only the items (of --limit's range) that fit one window at the defaults, or "
                        "only those that need several (the only ones a choice about inputs past one window changes)")
    p.add_argument("--start", type=int, default=0,
                   help="skip the split's first N items (then take --limit): extends a reported run with items no "
                        "earlier run has seen (SciFact's test split is its first 100 queries)")
    p.add_argument("--also", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="with --shipped: one more scorer, the defaults with these settings changed (JSON values or "
                        "None), scored and tested beside them, e.g. --also shortlist=None (read every window)")
    args = p.parse_args(argv)
    if args.start < 0:
        p.error(f"--start takes a count of items to skip (0 or more), got {args.start}")
    H.setup_torch(args.threads)
    items = DATASETS[args.dataset](H.resolve_data_dir(args.data_dir), args.split)
    items = items[args.start:]
    items = items[: args.limit] if args.limit else items
    if not items:
        raise SystemExit(f"--start {args.start} is past the {args.split} split's last item: lower --start")
    model = H.resolve_model(args.model)
    if args.shipped:
        shipped_main(args, items, model)
        return
    # prior="none": the prior, its weight and the shortlist change nothing in a capture; they are pinned to the
    # values the cached captures were keyed with (before the dense prior became the default)
    scorer = QRScorer(model, heads=args.heads, device="cpu", num_threads=args.threads, orders=CAPTURED_ORDERS,
                      calibration="subtract", prior="none", layout="input", prior_weight=0.7, shortlist=None)
    cache = H.CACHE_DIR / "position" / H.model_tag(args.model)
    atts = [capture(scorer, it, cache) for it in H.progress(items, desc=f"capturing {args.dataset}",
                                                             disable=args.no_progress)]
    split = args.split if args.dataset in ("hotpot", "hotpot_line", "scifact") else "all"
    name = f"position_{args.dataset}_{split}_{H.model_tag(args.model)}"

    texts = [[f"{t}\n{x}" if t else x for t, x in it["chunks"]] for it in items]
    scores = {config_name(c): [derived_scores(a, it, c) for a, it in zip(atts, items, strict=True)] for c in CONFIGS}
    passes = {config_name(c): c[1] for c in CONFIGS}  # forward passes per setting; the retrievers make none
    scores["BM25"] = [bm25_scores(it["query"], tx) for it, tx in zip(items, texts, strict=True)]
    from benchmarks.methods import Dense

    dense = Dense()
    scores["dense"] = [dense.scores(it["query"], tx) for it, tx in zip(items, texts, strict=True)]
    # prior="dense" (the same MiniLM as a prior) on the defaults' reading: weight 0.5 is the scorer's default
    for w in (0.7, 0.5):
        scores[f"divide K=2 +dense@{w}"] = [fuse_prior(base, d, w) for base, d in
                                            zip(scores["divide K=2"], scores["dense"], strict=True)]
        passes[f"divide K=2 +dense@{w}"] = 2

    if args.dataset == "identical":
        # every derived row reads the copies as given (dedupe=False); the scorer as shipped reads each distinct
        # chunk once, which only a direct call shows
        shipped = QRScorer(model, heads=args.heads, device="cpu", num_threads=args.threads)
        scores[SHIPPED] = [shipped.score(it["query"], it["chunks"]) for it in items]
        passes[SHIPPED] = shipped.config.orders

    if args.check:
        cfg = ("divide", 2, ("bm25", 0.5))
        # one weight in every input, as the derived rows fuse (prior_weight_long=None)
        own = QRScorer(model, heads=args.heads, device="cpu", num_threads=args.threads, calibration="divide",
                       orders=2, prior="bm25", prior_weight=0.5, prior_weight_long=None, layout="input",
                       shortlist=None)
        # the first input, and the first that needs more than one window (if any)
        checked = [0, *[i for i, a in enumerate(atts) if len(a.layouts) > CAPTURED_ORDERS][:1]]
        for i in checked:
            direct = own.score(items[i]["query"], items[i]["chunks"])
            derived = scores[config_name(cfg)][i]
            gap = max(abs(a - b) for a, b in zip(direct, derived, strict=True))
            print(f"derived vs QRScorer(...).score, input {i} ({len(atts[i].layouts)} layouts): max |diff| {gap:.2e}")
            assert gap < 1e-4, "derived scores differ from the scorer's own"

    qrels = {it["qid"]: {str(i): int(g) for i, g in enumerate(it["gold"]) if g} for it in items}
    runs = {m: {it["qid"]: H.ranking_to_run([str(i) for i in range(len(s))], s) for it, s in zip(items, sl, strict=True)}
            for m, sl in scores.items()}
    metrics = ["ndcg@10", "recall@5"] if args.dataset == "scifact" else ["recall@5", "recall@2"]
    main_metric = metrics[0]
    rows, results = [], {}
    for m, sl in scores.items():
        mean, _ = H.evaluate(qrels, runs[m], metrics)
        edges = [edge_in_top3(s, it["gold"]) for s, it in zip(sl, items, strict=True)]
        first = [f for f, _ in edges if f is not None]
        last = [x for _, x in edges if x is not None]
        profile = np.nanmean([position_profile(s, it["gold"]) for s, it in zip(sl, items, strict=True)], axis=0).tolist()
        n_chunks = len(items[0]["chunks"])
        per_position = np.nanmean([position_profile(s, it["gold"], n_chunks) for s, it in zip(sl, items, strict=True)],
                                  axis=0).tolist()
        spreads = [spread(s, it["gold"]) for s, it in zip(sl, items, strict=True)] if args.dataset == "identical" else []
        results[m] = {**mean, "first_nongold_top3": float(np.mean(first)) if first else None,
                      "last_nongold_top3": float(np.mean(last)) if last else None, "z_by_position": profile,
                      "z_by_each_position": per_position,
                      "identical_spread": float(np.mean(spreads)) if spreads else None,
                      "passes": passes.get(m, 0)}
        rows.append([m, *[mean[x] for x in metrics], results[m]["first_nongold_top3"], results[m]["last_nongold_top3"],
                     " ".join(f"{v:+.2f}" for v in profile), results[m]["identical_spread"], results[m]["passes"]])
    headers = ["method", *metrics, "non-gold first in top 3", "non-gold last in top 3",
               "non-gold mean z by position (first -> last fifth)", "identical spread", "passes"]
    table = H.markdown_table(headers, rows)
    tests = {}
    for target in [config_name(c) for c in CONFIGS] + [f"divide K=2 +dense@{w}" for w in (0.7, 0.5)]:
        t = H.paired_tests(qrels, {k: runs[k] for k in (target, "BM25", "dense", config_name(BASELINE))}, target, main_metric)
        tests[target] = t
    line = "\n\nPaired tests on " + main_metric + " (mean difference, p):\n\n" + "\n".join(
        f"- {target}: " + "; ".join(f"vs {o} {t['mean_diff']:+.3f} ({H.format_p(t['p'])})" for o, t in tt.items())
        for target, tt in tests.items())
    payload = {"dataset": args.dataset, "split": split, "n": len(items), "metrics": metrics, "results": results,
               "tests": tests}
    shown = {config_name(BASELINE): "QRHead's own scoring (before)", DEFAULT_ROW: "the defaults (after)",
             "divide K=4": "divide, 4 orders, no prior"}
    series = {label: results[m]["z_by_each_position"] for m, label in shown.items()}
    n_chunks = len(items[0]["chunks"])
    img = H.line_plot(list(range(1, n_chunks + 1)), series,
                      f"Non-gold chunks' score by prompt position ({args.dataset}, {split}, n={len(items)})",
                      H.IMG_DIR / f"{name}.png", "prompt position (1 = first written, last = next to the query)",
                      "mean within-query z-score", logx=False)
    payload["plots"] = [str(img.relative_to(H.REPO_ROOT))]
    H.write_results(name, payload, table + line)
    print(table + line)


def several_windows(scorer: QRScorer, item: dict[str, Any]) -> bool:
    """Whether ``scorer`` reads ``item``'s chunks whole in more than one window (before any shortlist)."""
    pipe = scorer.pipeline
    return len(pipe.coverings(normalize_chunks(item["chunks"]), pipe.room(item["query"]))[0]) > 1


def reading(scorer: QRScorer, item: dict[str, Any]) -> tuple[str, int]:
    """What QRHead reads of ``item`` under ``scorer``'s settings: ``"whole"`` or the shortlist it cuts to, and
    in how many windows (after dedupe), from one pass over the prior."""
    pipe = scorer.pipeline
    read, _ = pipe.read_chunks(normalize_chunks(item["chunks"]))
    room = pipe.room(item["query"])
    if not pipe.shortlists(read, room):
        return "whole", len(pipe.coverings(read, room)[0])
    prior = pipe.prior(item["query"], read)
    assert prior is not None
    keep = pipe.shortlist(item["query"], read, prior)
    return "keep=" + ",".join(map(str, keep)), len(pipe.coverings([read[i] for i in keep], room)[0])


def reading_settings(config: Any) -> Any:
    """``config`` without its shortlist settings: what :func:`reading` names goes into the key instead."""
    return config.replace(shortlist=None, shortlist_window=False)


def settings_json(config: Any) -> str:
    """The settings every ``--shipped`` cache line records: :func:`reading_settings` without
    ``prior_weight_long``, which :func:`shipped_key` names on the items where it acts."""
    flat = dataclasses.asdict(reading_settings(config))
    flat.pop("prior_weight_long", None)
    return json.dumps(flat, sort_keys=True, default=str)


def shipped_key(scorer: QRScorer, item: dict[str, Any]) -> str:
    """The ``--shipped`` cache key: the item, the settings but the shortlist's, and what QRHead reads of it
    (:func:`reading`); past one window, QRHead's share there too, where it differs from ``prior_weight``.
    Settings that read an item the same way share its scores."""
    what, windows = reading(scorer, item)
    key = capture_key(item, reading_settings(scorer.config)) + ":" + what
    cfg = scorer.config
    if cfg.prior != "none" and windows > 1 and cfg.weight_for(windows) != cfg.weight_for(1):
        key += f":long={cfg.weight_for(windows)}"
    return key


def parse_settings(text: str) -> dict[str, Any]:
    """``KEY=VALUE[,KEY=VALUE]`` as scorer keywords (VALUE as JSON; ``None`` also reads as null).

    Example:
        >>> parse_settings("shortlist=None,prior_weight=0.7")
        {'shortlist': None, 'prior_weight': 0.7}
    """
    out: dict[str, Any] = {}
    for pair in filter(None, text.split(",")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--also takes KEY=VALUE[,KEY=VALUE], got {pair!r} (e.g. --also shortlist=None)")
        out[key.strip()] = None if value.strip() in ("None", "null") else json.loads(value)
    return out


def cached_scores(scorer: QRScorer, items: list[dict[str, Any]], cache: Path, args: Any, label: str) -> list[list[float] | None]:
    """``scorer``'s scores of ``items`` (``None`` where ``--cached-only`` finds none), one cache line per item,
    keyed by :func:`shipped_key`, so a longer ``--limit`` scores only new items."""
    settings_key = settings_json(scorer.config)
    done: dict[str, list[float]] = {}

    def load() -> None:  # read again before each item: a second process (--reverse) may have scored it
        if cache.is_file():
            for line in cache.read_text().splitlines():
                row = json.loads(line)
                if row["settings"] == settings_key:
                    done[row["key"]] = row["scores"]

    load()
    cache.parent.mkdir(parents=True, exist_ok=True)
    keys = [shipped_key(scorer, it) for it in items]
    todo = [i for i, k in enumerate(keys) if k not in done and not args.cached_only]
    for i in H.progress(todo[::-1] if args.reverse else todo, desc=label, disable=args.no_progress):
        load()
        if keys[i] not in done:
            done[keys[i]] = scorer.score(items[i]["query"], items[i]["chunks"])
            with cache.open("a") as f:
                f.write(json.dumps({"key": keys[i], "settings": settings_key, "scores": done[keys[i]]}) + "\n")
    load()
    return [done.get(k) for k in keys]


def shipped_main(args: Any, items: list[dict[str, Any]], model: str) -> None:
    """``--shipped``: the scorer as shipped (``QRScorer()``'s defaults), any ``--also`` variants, BM25 and dense,
    with paired tests of the defaults against each."""
    from benchmarks.methods import Dense

    common = {"heads": args.heads, "device": "cpu", "num_threads": args.threads}
    scorers = {SHIPPED: QRScorer(model, **common)}
    if args.windows != "any":
        items = [it for it in items if several_windows(scorers[SHIPPED], it) == (args.windows == "several")]
        if not items:
            raise SystemExit(f"no item of --limit's range matches --windows {args.windows}: widen --limit, or drop --windows")
    for text in args.also:
        changed = parse_settings(text)
        scorers["QRScorer(" + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + ")"] = QRScorer(model, **common, **changed)
    cache = H.CACHE_DIR / "position" / H.model_tag(args.model) / f"shipped_{args.dataset}.jsonl"
    found = {label: cached_scores(sc, items, cache, args, label) for label, sc in scorers.items()}
    # --cached-only: the items every scorer has scored (which those are depends on the order they were scored in)
    have = [i for i in range(len(items)) if all(f[i] is not None for f in found.values())]
    if not have:
        raise SystemExit(f"no item of the {len(items)} in range is cached for every scorer ({', '.join(found)}): "
                         "drop --cached-only to score the missing ones, or drop the --also whose scores are missing")
    items = [items[i] for i in have]
    texts = [[f"{t}\n{x}" if t else x for t, x in it["chunks"]] for it in items]
    scores: dict[str, list[list[float]]] = {label: [f[i] for i in have] for label, f in found.items()}  # type: ignore[misc]
    scores["BM25"] = [bm25_scores(it["query"], tx) for it, tx in zip(items, texts, strict=True)]
    dense = Dense()
    scores["dense"] = [dense.scores(it["query"], tx) for it, tx in zip(items, texts, strict=True)]
    qrels = {it["qid"]: {str(i): int(g) for i, g in enumerate(it["gold"]) if g} for it in items}
    runs = {m: {it["qid"]: H.ranking_to_run([str(i) for i in range(len(s))], s) for it, s in zip(items, sl, strict=True)}
            for m, sl in scores.items()}
    metrics = ["ndcg@10", "recall@5"] if args.dataset == "scifact" else ["recall@5", "recall@2"]
    results, rows, per_query = {}, [], {}
    for m in scores:
        mean, per = H.evaluate(qrels, runs[m], metrics)
        per_query[m] = {q: float(v) for q, v in per[metrics[0]].items()}
        edges = [edge_in_top3(s, it["gold"]) for s, it in zip(scores[m], items, strict=True)]
        first = [f for f, _ in edges if f is not None]
        last = [x for _, x in edges if x is not None]
        results[m] = {**mean, "first_nongold_top3": float(np.mean(first)) if first else None,
                      "last_nongold_top3": float(np.mean(last)) if last else None}
        rows.append([m, *[mean[x] for x in metrics], results[m]["first_nongold_top3"], results[m]["last_nongold_top3"]])
    tests = H.paired_tests(qrels, runs, SHIPPED, metrics[0])
    settings = {k: v for k, v in dataclasses.asdict(scorers[SHIPPED].config).items() if k in (
        "calibration", "orders", "prior", "prior_weight", "prior_weight_long", "shortlist", "dedupe")}
    split = args.split if args.dataset in ("hotpot", "hotpot_line", "scifact") else "all"
    name = args.out or f"position_{args.dataset}_{split}_{H.model_tag(args.model)}_shipped"
    table = H.markdown_table(["method", *metrics, "non-gold first in top 3", "non-gold last in top 3"], rows)
    line = (f"\n\nDefaults: {settings}. Paired tests on {metrics[0]}: "
            + "; ".join(f"vs {o} {t['mean_diff']:+.3f} ({H.format_p(t['p'])}, wins/ties/losses "
                        + "/".join(map(str, t["wins_ties_losses"])) + ")" for o, t in tests.items()))
    H.write_results(name, {"dataset": args.dataset, "split": split, "n": len(items), "metrics": metrics,
                           "settings": settings, "start": args.start, "results": results, "tests": tests,
                           "per_query": per_query}, table + line)
    print(table + line)
