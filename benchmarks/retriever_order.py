"""The adapters where users meet them: default settings, candidates handed over in retriever order.

Two retrievers a user would have in front of the re-ranker:

* **BM25**: SciFact's shared BM25 top-k (``bm25_top100.test.jsonl``); for HotpotQA, bm25s over the
  question's ten paragraphs;
* **dense**: all-MiniLM-L6-v2 cosine similarity; for SciFact over the whole corpus (5,183 abstracts, the
  embeddings cached once), for HotpotQA over the question's ten paragraphs.

Each retriever's top-k goes, best first, through ``QRHeadDocumentCompressor`` (LangChain) and
``QRHeadNodePostprocessor`` (LlamaIndex, with the retriever's scores on the nodes) at their default
settings, and is compared with the retriever's own order, QRHead alone in each prompt layout
(``input``, ``reversed``, ``both``) and the fusion variants (RRF, weighted score mix), with paired
randomization tests.

The QRHead scores of one (query, candidates, layout) are computed once and cached on disk, keyed on the
exact texts, so both adapters and every variant read the same forward pass, and an interrupted run
resumes. ``--shard i/n`` splits the scoring over processes (one torch thread each is fastest on 2 cores);
``--step report`` then writes the tables.

    .venv/bin/python -m benchmarks run retriever-order-scifact --limit 300 --layouts reversed --threads 1 --shard 0/2
    .venv/bin/python -m benchmarks run retriever-order-hotpotqa --layouts reversed,input --threads 1
    .venv/bin/python -m benchmarks run retriever-order-scifact --step report --limit 300
    .venv/bin/python -m benchmarks run trim-generate-retriever-order --start 50 --limit 50 --top 2
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import harness as H
from benchmarks import methods as M

SINGLE_LAYOUTS = ("input", "reversed")  # each one forward pass; "both" is their mean


@dataclass
class Item:
    """One query with one retriever's candidates, best first."""

    qid: str
    query: str
    retriever: str
    ids: list[str]
    texts: list[str]  # what the adapters receive: "title\ntext" (the scorer's "[i] title\ntext" block)
    retriever_scores: list[float]


def content_key(query: str, texts: Sequence[str], layout: str, heads: str, model: str) -> str:
    """The cache key of one QRHead scoring: the exact query, texts, layout, head set and model."""
    h = hashlib.sha256()
    for part in (model, heads, layout, query, *texts):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x1e")
    return h.hexdigest()[:24]


SCORES_DIR = H.RESULTS_DIR / "scores"  # committed copies of the score caches, so a later run resumes


class ScoreCache:
    """QRHead scores on disk: one JSONL file per shard, all shards read back (also the committed copies)."""

    def __init__(self, folder: Path, tag: str, shard: str = "0") -> None:
        self.folder = folder
        pattern = f"retriever_order_{tag}_*.jsonl"
        self.caches = [H.JsonlCache(p) for d in (folder, SCORES_DIR) for p in sorted(d.glob(pattern))]
        self.own = H.JsonlCache(folder / f"retriever_order_{tag}_{shard}.jsonl")

    def get(self, key: str) -> Any:
        for c in [self.own, *self.caches]:
            hit = c.get(key)
            if hit is not None:
                return hit
        return None

    def put(self, key: str, value: Any) -> None:
        self.own.put(key, value)


# ---------------------------------------------------------------------------------------------- data


def dense_corpus_ranking(corpus: dict[str, tuple[str, str]], queries: dict[str, str], qids: list[str], k: int,
                         dense: M.Dense) -> dict[str, list[tuple[str, float]]]:
    """Dense top-k over the whole corpus (embeddings cached under benchmarks/.cache)."""
    import numpy as np

    ids = sorted(corpus)
    emb_path = H.CACHE_DIR / "scifact_minilm_corpus.npy"
    ids_path = H.CACHE_DIR / "scifact_minilm_corpus_ids.json"
    if emb_path.is_file() and ids_path.is_file() and json.loads(ids_path.read_text()) == ids:
        emb = np.load(emb_path)
    else:
        texts = [f"{corpus[d][0]}. {corpus[d][1]}" if corpus[d][0] else corpus[d][1] for d in ids]
        emb = dense.model.encode(texts, normalize_embeddings=True, batch_size=64, show_progress_bar=True)
        H.CACHE_DIR.mkdir(parents=True, exist_ok=True)
        np.save(emb_path, emb)
        ids_path.write_text(json.dumps(ids))
    q = dense.model.encode([queries[x] for x in qids], normalize_embeddings=True, batch_size=64, show_progress_bar=False)
    sims = q @ emb.T
    out = {}
    for row, qid in zip(sims, qids, strict=True):
        top = np.argsort(-row, kind="stable")[:k]
        out[qid] = [(ids[i], float(row[i])) for i in top]
    return out


def scifact_items(data_dir: Path, k: int, words: int, limit: int | None) -> tuple[list[Item], dict[str, dict[str, int]]]:
    beir, cands = H.scifact_test(data_dir)
    qids = [q for q in cands if q in beir.qrels][:limit]

    def text(d: str) -> str:
        title, body = beir.corpus[d]
        body = H.cut_words(body, words)
        return f"{title}\n{body}" if title else body

    items = [Item(q, beir.queries[q], "bm25", [d for d, _ in cands[q][:k]], [text(d) for d, _ in cands[q][:k]],
                  [s for _, s in cands[q][:k]]) for q in qids]
    dense = dense_corpus_ranking(beir.corpus, beir.queries, qids, k, M.Dense())
    items += [Item(q, beir.queries[q], "dense", [d for d, _ in dense[q]], [text(d) for d, _ in dense[q]],
                   [s for _, s in dense[q]]) for q in qids]
    return items, {q: beir.qrels[q] for q in qids}


def hotpot_items(data_dir: Path, limit: int | None) -> tuple[list[Item], dict[str, dict[str, int]]]:
    qs = H.hotpot_questions(data_dir, 0, limit)
    dense = M.Dense()
    items, qrels = [], {}
    for q in qs:
        ids = [str(p["idx"]) for p in q["paragraphs"]]
        texts = [f"{p['title']}\n{p['paragraph_text']}" for p in q["paragraphs"]]
        plain = [f"{p['title']}. {p['paragraph_text']}" for p in q["paragraphs"]]
        qrels[q["idx"]] = {str(p["idx"]): 1 for p in q["paragraphs"] if p["is_supporting"]}
        for name, scores in (("bm25", M.bm25_scores(q["question"], plain)), ("dense", dense.scores(q["question"], plain))):
            order = sorted(range(len(ids)), key=lambda i, s=scores: (-s[i], i))
            items.append(Item(q["idx"], q["question"], name, [ids[i] for i in order], [texts[i] for i in order],
                              [scores[i] for i in order]))
    return items, qrels


def load_items(args: Any) -> tuple[list[Item], dict[str, dict[str, int]]]:
    if args.dataset == "scifact":
        return scifact_items(args.data_dir, args.k, args.words, args.limit)
    return hotpot_items(args.data_dir, args.limit)


# ---------------------------------------------------------------------------------------------- scoring


def compute(args: Any) -> None:
    from qr_integrations import QRScorer

    items, _ = load_items(args)
    index, count = (int(x) for x in args.shard.split("/"))
    wanted = {qid for i, qid in enumerate(sorted({it.qid for it in items})) if i % count == index}
    tag = f"{args.dataset}_{H.model_tag(args.model)}"
    cache = ScoreCache(H.CACHE_DIR, tag, args.shard.replace("/", "of"))
    scorer = QRScorer(H.resolve_model(args.model), heads=args.heads, device="cpu")
    heads = scorer.head_set.to_string()
    layouts = args.layouts.split(",")
    position = {q: i for i, q in enumerate(dict.fromkeys(it.qid for it in items))}
    # the first layout (the default path) for every query first, each query's retrievers together, so an
    # interrupted run leaves complete queries behind
    todo = sorted(((it, lay) for it in items if it.qid in wanted for lay in layouts),
                  key=lambda x: (layouts.index(x[1]), position[x[0].qid]))
    for it, lay in H.progress(todo, desc=f"{tag} {args.shard}", disable=args.no_progress):
        key = content_key(it.query, it.texts, lay, heads, H.model_tag(args.model))
        if cache.get(key) is not None:
            continue
        t0 = time.perf_counter()
        s = scorer.score(it.query, it.texts, layout=lay)
        cache.put(key, {"scores": s, "seconds": time.perf_counter() - t0, "qid": it.qid, "retriever": it.retriever,
                        "layout": lay})


# ---------------------------------------------------------------------------------------------- report


def cached_scorer_class() -> type:
    """A :class:`QRScorer` whose :meth:`score` reads and fills the on-disk cache (the adapters' seam)."""
    from qr_integrations import QRScorer

    class CachedScorer(QRScorer):
        def __init__(self, cache: ScoreCache, tag: str, **kw: Any) -> None:
            super().__init__(**kw)
            self.cache, self.tag = cache, tag
            self.misses = 0

        def score(self, query: str, chunks: Sequence[Any], *, layout: str | None = None) -> list[float]:
            texts = list(chunks)
            lay = layout or self.config.layout
            if lay == "both":  # the core's "both" is the mean of the two single layouts
                a, b = (self.score(query, texts, layout=x) for x in SINGLE_LAYOUTS)
                return [(x + y) / 2 for x, y in zip(a, b, strict=True)]
            key = content_key(query, texts, lay, self.head_set.to_string(), self.tag)
            hit = self.cache.get(key)
            if hit is None:
                self.misses += 1
                t0 = time.perf_counter()
                scores = super().score(query, texts, layout=lay)
                hit = {"scores": scores, "seconds": time.perf_counter() - t0}
                self.cache.put(key, hit)
            return list(hit["scores"])

    return CachedScorer


def adapter_rankings(scorer: Any, it: Item) -> dict[str, list[int]]:
    """The order in which each adapter, at its default settings, returns ``it``'s candidates."""
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from qr_integrations.langchain import QRHeadDocumentCompressor
    from qr_integrations.llama_index import QRHeadNodePostprocessor

    docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(it.texts)]
    lc = QRHeadDocumentCompressor(scorer=scorer).compress_documents(docs, it.query)
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=s)
             for i, (t, s) in enumerate(zip(it.texts, it.retriever_scores, strict=True))]
    li = QRHeadNodePostprocessor(scorer=scorer).postprocess_nodes(nodes, query_str=it.query)
    return {"langchain": [d.metadata["i"] for d in lc], "llama_index": [int(n.node.id_) for n in li]}


def variant_scores(it: Item, qr: dict[str, list[float]]) -> dict[str, list[float]]:
    """Every alternative a user could configure, from the cached layout scores (no further passes)."""
    from qr_integrations.core.fusion import fuse

    n = len(it.texts)
    out: dict[str, list[float]] = {"retriever": [float(n - i) for i in range(n)]}
    for lay, s in qr.items():
        out[f"qr:{lay}"] = s
    base = qr.get("reversed")
    if base is not None:
        for w in (0.3, 0.5, 0.7):
            out[f"rrf:{w}"] = fuse(base, None, "rrf", w)
            out[f"weighted-order:{w}"] = fuse(base, None, "weighted", w)
            out[f"weighted-scores:{w}"] = fuse(base, it.retriever_scores, "weighted", w)
    if "input" in qr and base is not None:
        out["rrf-both:0.5"] = fuse(qr["both"], None, "rrf", 0.5)
    return out


NAMES = {
    "retriever": "retriever order",
    "langchain": "**LangChain compressor, defaults**",
    "llama_index": "**LlamaIndex postprocessor, defaults**",
    "qr:input": "QRHead alone, layout input (best first)",
    "qr:reversed": "QRHead alone, layout reversed",
    "qr:both": "QRHead alone, layout both (2 passes)",
    "rrf-both:0.5": "RRF 0.5 over layout both (2 passes)",
}


def name_of(m: str) -> str:
    if m in NAMES:
        return NAMES[m]
    kind, w = m.split(":")
    label = {"rrf": "RRF", "weighted-order": "score mix with rank-derived retriever scores",
             "weighted-scores": "score mix with the retriever's scores"}[kind]
    return f"{label}, QRHead weight {w}"


def report(args: Any) -> dict:
    items, qrels = load_items(args)
    model_tag = H.model_tag(args.model)
    tag = f"{args.dataset}_{model_tag}"
    cache = ScoreCache(H.CACHE_DIR, tag, "report")
    scorer = cached_scorer_class()(cache, model_tag, model=H.resolve_model(args.model), heads=args.heads, device="cpu")
    heads = scorer.head_set.to_string()
    metrics = ["ndcg@10", "recall@10"] if args.dataset == "scifact" else ["recall@2", "recall@5", "ndcg@10"]
    key_metric = metrics[0]
    per: dict[str, dict[str, dict[str, dict[str, float]]]] = {}  # retriever -> method -> qid -> run
    have_input: dict[str, set[str]] = {}
    seconds: list[float] = []
    for it in H.progress(items, desc=f"report {tag}", disable=args.no_progress):
        qr: dict[str, list[float]] = {}
        for lay in SINGLE_LAYOUTS:
            hit = cache.get(content_key(it.query, it.texts, lay, heads, model_tag))
            if hit is not None:
                qr[lay] = hit["scores"]
                if hit.get("seconds") is not None:
                    seconds.append(hit["seconds"])
        if "reversed" not in qr and not args.allow_missing:
            continue  # the default layout was not scored for this query (yet): leave it out of every row
        if "input" in qr and "reversed" in qr:
            qr["both"] = [(a + b) / 2 for a, b in zip(qr["input"], qr["reversed"], strict=True)]
            have_input.setdefault(it.retriever, set()).add(it.qid)
        runs = per.setdefault(it.retriever, {})
        for m, sc in variant_scores(it, qr).items():
            runs.setdefault(m, {})[it.qid] = H.ranking_to_run(it.ids, sc)
        for m, order in adapter_rankings(scorer, it).items():
            runs.setdefault(m, {})[it.qid] = H.ranking_to_run(it.ids, H.order_to_scores(order, len(order)))
    tables, results = [], []
    for retriever, runs in per.items():
        groups = [("all scored", sorted(runs["langchain"]))]
        if args.dataset == "hotpotqa":  # the shipped head sets saw questions 0-49
            order = list(dict.fromkeys(it.qid for it in items))
            held_out = sorted(q for q in order[50:] if q in runs["langchain"])
            if held_out:
                groups.append(("questions 50-99, held out from head detection", held_out))
        if have_input.get(retriever) and len(have_input[retriever]) < len(runs["langchain"]):
            groups.append(("both layouts scored", sorted(have_input[retriever])))
        for label, qset in groups:
            methods = [m for m in runs if all(q in runs[m] for q in qset)]
            rows = []
            for m in methods:
                mean, _ = H.evaluate(qrels, {q: runs[m][q] for q in qset}, metrics)
                results.append({"retriever": retriever, "queries": label, "n": len(qset), "method": m, **mean})
                rows.append([name_of(m), *(mean[x] for x in metrics)])
            tests = H.paired_tests(qrels, {m: {q: runs[m][q] for q in qset} for m in methods}, "langchain", key_metric)
            li = H.paired_tests(qrels, {m: {q: runs[m][q] for q in qset} for m in ("llama_index", "retriever")},
                                "llama_index", key_metric)
            results.append({"retriever": retriever, "queries": label, "paired_tests": tests, "target": "langchain",
                            "llama_index_vs_retriever": li["retriever"]})
            line = H.describe_tests({m: tests[m] for m in tests if m != "llama_index"},
                                    {m: name_of(m) for m in methods}, "the LangChain compressor's defaults", key_metric)
            tables.append(f"**{retriever} candidates, best first; {label}: {len(qset)} queries**\n\n"
                          + H.markdown_table(["method", *metrics], rows) + "\n\n" + line)
    # the summary: where users meet it (each adapter at its defaults) against the retriever and QRHead alone
    head = ["candidates", "queries", "n", "retriever order", "QRHead alone, input", "QRHead alone, reversed",
            "QRHead alone, both", "LangChain defaults", "LlamaIndex defaults", "LangChain vs retriever: p (W/T/L)",
            "LlamaIndex vs retriever: p (W/T/L)"]
    summary = []
    by = {(r["retriever"], r["queries"], r["method"]): r for r in results if "method" in r}
    for r in results:
        if "paired_tests" not in r:
            continue
        key = (r["retriever"], r["queries"])
        cell = [by[(*key, m)][key_metric] if (*key, m) in by else float("nan")
                for m in ("retriever", "qr:input", "qr:reversed", "qr:both", "langchain", "llama_index")]
        summary.append([r["retriever"], r["queries"], by[(*key, "langchain")]["n"], *cell,
                        *(f"{H.format_p(t['p'])} ({'/'.join(map(str, t['wins_ties_losses']))})"
                          for t in (r["paired_tests"]["retriever"], r["llama_index_vs_retriever"]))])
    tables.insert(0, f"Summary, {key_metric} (full tables below)\n\n" + H.markdown_table(head, summary))
    n_items = sum(len(r["langchain"]) for r in per.values())
    title = (f"{args.dataset}: adapters at default settings on candidates in retriever order; model {model_tag}, "
             f"heads {scorer.head_set.name or heads}"
             + (f", top-{args.k}, abstracts cut to {args.words} words" if args.dataset == "scifact" else ", 10 paragraphs"))
    table = title + "\n\n" + "\n\n".join(tables)
    lat = H.latency_stats(seconds) if seconds else {}
    if lat:
        table += (f"\n\nQRHead forward pass per query and layout (one torch thread, 2-core machine, shared with "
                  f"other quality runs): median {lat['median_s']:.1f} s, p90 {lat['p90_s']:.1f} s")
    payload = {"settings": vars(args) | {"data_dir": str(args.data_dir)}, "heads": heads, "results": results,
               "items_reported": n_items, "scorer_cache_misses": scorer.misses, "latency": lat}
    bars = {}
    for r in results:
        if r.get("queries") == "all scored" and "method" in r and r["method"] in (
                "retriever", "langchain", "llama_index", "qr:input", "qr:reversed"):
            bars.setdefault(f"{r['retriever']} {key_metric}", {})[name_of(r["method"]).strip("*")] = r[key_metric]
    name = args.out or f"retriever_order_{tag}"
    return H.publish(name, payload, table, bars, f"{args.dataset}: adapters in retriever order, {model_tag}", key_metric)


# ---------------------------------------------------------------------------------------------- generate


def generate(args: Any) -> dict:
    """Trim, then generate, in retriever order: HotpotQA answers from the retriever's top paragraphs, the
    LangChain compressor's (defaults, ``top_n``) over the same best-first candidates, all ten, and the gold two.

    The compressor's selection comes from the embedded model's cached scores (run the scoring phase first);
    the answers come from ``--generator`` (Qwen2.5-Coder-0.5B by default), greedy, cached per prompt.
    """
    from langchain_core.documents import Document

    from benchmarks.trim_generate import answer_summary, answerer
    from qr_integrations import QRScorer
    from qr_integrations.langchain import QRHeadDocumentCompressor

    items, _ = hotpot_items(args.data_dir, None)
    qs = {q["idx"]: q for q in H.hotpot_questions(args.data_dir)}
    chosen = list(qs)[args.start: args.start + (args.limit or len(qs))]
    model_tag = H.model_tag(args.model)
    cache = ScoreCache(H.CACHE_DIR, f"hotpotqa_{model_tag}", "report")
    scorer = cached_scorer_class()(cache, model_tag, model=H.resolve_model(args.model), heads=args.heads, device="cpu")
    gen_tag = H.model_tag(args.generator)
    # the generator's own scorer only lends its loaded model and tokenizer; answers are cached per prompt
    answer = answerer(QRScorer(H.resolve_model(args.generator), device="cpu"), gen_tag, args.max_new_tokens)

    by_q: dict[str, dict[str, Item]] = {}
    for it in items:
        by_q.setdefault(it.qid, {})[it.retriever] = it
    k = args.top
    conditions = ["full", *(f"{r}-top{k}" for r in ("bm25", "dense")),
                  *(f"langchain({r})-top{k}" for r in ("bm25", "dense")), "gold"]
    per: dict[str, list[dict]] = {c: [] for c in conditions}
    compressor = QRHeadDocumentCompressor(scorer=scorer, top_n=k, keep_order=True)
    for qid in H.progress(chosen, desc=f"generate {gen_tag}", disable=args.no_progress):
        q = qs[qid]
        pars = [(p["title"], p["paragraph_text"]) for p in q["paragraphs"]]
        ids = [str(p["idx"]) for p in q["paragraphs"]]
        gold = {i for i, p in enumerate(q["paragraphs"]) if p["is_supporting"]}
        for c in conditions:
            if c == "full":
                keep = list(range(len(pars)))
            elif c == "gold":
                keep = sorted(gold)
            else:
                r = c.split("-top")[0]
                if r.startswith("langchain"):
                    it = by_q[qid][r[len("langchain("):-1]]
                    docs = [Document(page_content=t, metadata={"id": d}) for t, d in zip(it.texts, it.ids, strict=True)]
                    picked = [d.metadata["id"] for d in compressor.compress_documents(docs, it.query)]
                else:
                    picked = by_q[qid][r].ids[:k]
                keep = sorted(ids.index(d) for d in picked)  # the paragraphs in the dataset's order
            pred, ntok, sec = answer(q["question"], [pars[i] for i in keep])
            per[c].append({"qid": qid, "pred": pred, "gold": q["answer"], "f1": H.token_f1(pred, q["answer"]),
                           "em": H.exact_match(pred, q["answer"]), "prompt_tokens": ntok, "seconds": sec,
                           "gold_kept": len(set(keep) & gold)})
    rows, results = [], []
    for c in conditions:
        res = answer_summary(c, per[c])
        results.append(res)
        rows.append([c, res["em"], res["f1"], res["both_gold_kept"], round(res["mean_prompt_tokens"])])
    tests = {}
    for r in ("bm25", "dense"):
        for other in ("full", f"{r}-top{k}"):
            tests[f"langchain({r})-top{k} vs {other}"] = H.paired_score_test(
                [x["f1"] for x in per[f"langchain({r})-top{k}"]], [x["f1"] for x in per[other]])
    table = (f"HotpotQA questions {args.start}-{args.start + len(chosen) - 1}: answers by {gen_tag} (greedy, max "
             f"{args.max_new_tokens} new tokens) from each context; langchain(R) is the compressor at its defaults "
             f"(embedded {model_tag} scorer) with top_n={k}, fed retriever R's ten paragraphs best first\n\n"
             + H.markdown_table(["context", "EM", "F1", "both gold kept", "prompt tokens"], rows)
             + "\n\nPaired randomization test of token F1: " + "; ".join(
                 f"{pair} {t['mean_diff']:+.3f}, {H.format_p(t['p'])} (wins/ties/losses "
                 f"{'/'.join(map(str, t['wins_ties_losses']))})" for pair, t in tests.items()))
    payload = {"settings": vars(args) | {"data_dir": str(args.data_dir)}, "results": results, "paired_tests_f1": tests,
               "examples": {c: per[c][:5] for c in conditions}}
    name = args.out or f"retriever_order_generate_{gen_tag}"
    H.write_results(name, payload, table)
    print(table)
    return payload


def main(argv: list[str] | None = None) -> None:
    p = H.common_parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["scifact", "hotpotqa"], required=True)
    p.add_argument("--k", type=int, default=20, help="SciFact: candidates per query from each retriever")
    p.add_argument("--words", type=int, default=150, help="SciFact: cut each abstract to this many words")
    p.add_argument("--layouts", default="reversed,input", help="prompt layouts to compute QRHead scores for")
    p.add_argument("--shard", default="0/1", help="i/n: score only every n-th query starting at i")
    p.add_argument("--report", action="store_true", help="write the tables from the cached scores")
    p.add_argument("--generate", action="store_true",
                   help="HotpotQA: trim with the compressor's defaults in retriever order, then answer with --generator")
    p.add_argument("--generator", default="qwen", help="with --generate: the answering model")
    p.add_argument("--start", type=int, default=50, help="with --generate: first question (0-49 saw head detection)")
    p.add_argument("--top", type=int, default=2, help="with --generate: paragraphs kept")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--allow-missing", action="store_true",
                   help="with --report: score queries whose default layout is not cached yet (slow)")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    if args.generate:
        generate(args)
    elif args.report:
        report(args)
    else:
        compute(args)
