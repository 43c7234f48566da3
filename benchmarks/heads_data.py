"""Examples for head detection and its held-out evaluation, built from ``../shared/data``.

* SciFact **train** queries (``qrels/train.tsv``) with our own BM25 top-20 over the corpus, for detection;
* SciFact **test** queries re-ranking the shared BM25 top-20 (``bm25_top100.test.jsonl``), for evaluation;
* HotpotQA (100 distractor questions, 10 paragraphs, 2 supporting): questions 0-49 for detection,
  questions 50-99 for evaluation.

BM25 for the train queries follows the shared test candidates: ``bm25s`` with k1=0.9, b=0.4, English
stopwords, the Snowball English stemmer (PyStemmer), title + text. Passages are cut to a word limit to
keep CPU forward passes short, and the candidate order is reversed (best BM25 candidate nearest the
query), as in the QRHead paper. Nothing here is committed data: it is read from the shared folder.
"""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

SHARED = Path(os.environ.get("QR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCIFACT = SHARED / "scifact"
HOTPOTQA = SHARED / "hotpotqa" / "hotpotqa_train_100.paragraphs.json"

BM25_K1, BM25_B = 0.9, 0.4
HOTPOT_SPLIT = 50  # questions [0, 50) detect, [50, 100) evaluate


@dataclass(frozen=True)
class Example:
    """One query with its candidate chunks in prompt order and the relevance of each (0 = not relevant).

    ``num_relevant`` counts every relevant document of the query (also those outside the candidates), so
    nDCG is normalized by the ideal over all of them, as trec_eval does for a re-ranker.
    """

    qid: str
    query: str
    chunks: list[tuple[str, str]]
    relevance: list[int]
    doc_ids: list[str]
    first_stage: list[float] = field(default_factory=list)  # first-stage score per chunk (BM25), if any
    all_relevance: list[int] = field(default_factory=list)  # grades of every relevant doc of the query

    def to_json(self) -> dict[str, object]:
        """The detection JSONL form (see docs/heads.md)."""
        return {
            "id": self.qid,
            "query": self.query,
            "chunks": [{"id": d, "title": t, "text": x} for d, (t, x) in zip(self.doc_ids, self.chunks, strict=True)],
            "gold": {d: r for d, r in zip(self.doc_ids, self.relevance, strict=True) if r > 0},
        }


def cut_words(text: str, limit: int) -> str:
    """The first ``limit`` whitespace-separated words of ``text``."""
    words = text.split()
    return text.strip() if len(words) <= limit else " ".join(words[:limit])


@lru_cache(maxsize=1)
def _scifact_corpus() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out[str(d["_id"])] = {"title": d.get("title", ""), "text": d.get("text", "")}
    return out


@lru_cache(maxsize=1)
def _scifact_queries() -> dict[str, str]:
    out: dict[str, str] = {}
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out[str(d["_id"])] = d["text"]
    return out


def _qrels(split: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    with (SCIFACT / "qrels" / f"{split}.tsv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if int(row["score"]) > 0:
                out.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
    return out


def bm25_search(queries: list[str], k: int) -> list[list[tuple[str, float]]]:
    """BM25 top-``k`` SciFact documents for each query (the settings of the shared test candidates)."""
    import bm25s
    import Stemmer

    corpus = _scifact_corpus()
    ids = list(corpus)
    stemmer = Stemmer.Stemmer("english")
    texts = [f"{corpus[i]['title']} {corpus[i]['text']}" for i in ids]
    retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B)
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    q_tokens = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
    docs, scores = retriever.retrieve(q_tokens, k=k, show_progress=False, n_threads=1)
    return [[(ids[int(d)], float(s)) for d, s in zip(row_d, row_s, strict=True)] for row_d, row_s in zip(docs, scores, strict=True)]


def _scifact_example(qid: str, cands: list[tuple[str, float]], rel: dict[str, int], words: int) -> Example:
    corpus = _scifact_corpus()
    order = list(reversed(cands))  # best BM25 candidate last, nearest the query
    return Example(
        qid=qid,
        query=_scifact_queries()[qid],
        chunks=[(corpus[d]["title"], cut_words(corpus[d]["text"], words)) for d, _ in order],
        relevance=[rel.get(d, 0) for d, _ in order],
        doc_ids=[d for d, _ in order],
        first_stage=[s for _, s in order],
        all_relevance=sorted(rel.values(), reverse=True),
    )


def scifact_train(n: int, candidates: int = 20, words: int = 40, seed: int = 0) -> list[Example]:
    """``n`` SciFact train queries (seeded sample among those with a relevant doc in our BM25 top-``candidates``)."""
    qrels = _qrels("train")
    qids = sorted(qrels, key=int)
    queries = _scifact_queries()
    results = bm25_search([queries[q] for q in qids], candidates)
    usable = [
        (q, cands) for q, cands in zip(qids, results, strict=True) if any(d in qrels[q] for d, _ in cands)
    ]
    random.Random(seed).shuffle(usable)
    return [_scifact_example(q, cands, qrels[q], words) for q, cands in usable[:n]]


def scifact_test(n: int | None, candidates: int = 20, words: int = 40, seed: int = 0) -> list[Example]:
    """``n`` SciFact test queries (seeded sample of all 300; ``None`` for all) over the shared BM25 top-``candidates``."""
    qrels = _qrels("test")
    rows: list[tuple[str, list[tuple[str, float]]]] = []
    with (SCIFACT / "bm25_top100.test.jsonl").open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            rows.append((str(d["query_id"]), [(str(c), float(s)) for c, s in d["candidates"][:candidates]]))
    rows = [r for r in rows if r[0] in qrels]
    rows.sort(key=lambda r: int(r[0]))
    random.Random(seed).shuffle(rows)
    if n is not None:
        rows = rows[:n]
    return [_scifact_example(q, cands, qrels[q], words) for q, cands in rows]


def hotpotqa(part: str, n: int | None = None, words: int = 64) -> list[Example]:
    """HotpotQA questions of one half: ``"detect"`` (0-49) or ``"eval"`` (50-99); the first ``n`` of it."""
    if part not in {"detect", "eval"}:
        raise ValueError("part is 'detect' or 'eval'")
    data = json.loads(HOTPOTQA.read_text(encoding="utf-8"))
    rows = data[:HOTPOT_SPLIT] if part == "detect" else data[HOTPOT_SPLIT:]
    if n is not None:
        rows = rows[:n]
    out = []
    for i, q in enumerate(rows):
        paras = q["paragraphs"]
        rel = [1 if p["is_supporting"] else 0 for p in paras]
        out.append(
            Example(
                qid=str(q.get("idx", i)),
                query=q["question"],
                chunks=[(p["title"], cut_words(p["paragraph_text"], words)) for p in paras],
                relevance=rel,
                doc_ids=[str(p["idx"]) for p in paras],
                all_relevance=[1] * sum(rel),
            )
        )
    return out


def hotpotqa_bm25(example: Example) -> list[float]:
    """BM25 scores of one HotpotQA question's own paragraphs (a first-stage reference point)."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    texts = [f"{t} {x}" for t, x in example.chunks]
    retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B)
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    q = bm25s.tokenize([example.query], stopwords="en", stemmer=stemmer, show_progress=False)
    docs, scores = retriever.retrieve(q, k=len(texts), show_progress=False, n_threads=1)
    out = [0.0] * len(texts)
    for d, s in zip(docs[0], scores[0], strict=True):
        out[int(d)] = float(s)
    return out
