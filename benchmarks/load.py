"""Load test (issue #5): many mixed requests from threads and asyncio tasks against one shared scorer.

The same list of requests (``--requests``, default 200; seeded) runs twice in one process:

1. **sequential**: one after another, to record each request's reference answer and service time;
2. **concurrent**: half the requests from ``--workers // 2`` threads (sync core and adapter calls), the
   other half from as many asyncio tasks on one event loop (the adapters' async paths and
   ``asyncio.to_thread`` for core calls), all at once, against the same :class:`QRScorer`, the same
   LlamaIndex postprocessor and the same LangChain compressor (one loaded model).

Every concurrent answer is compared with its sequential answer (scores bit for bit, order, kept ids).
Reported: errors, mismatches, wall time, throughput and p50/p95/max latency of each phase. A request is
``score``, ``rank`` (top 3), ``trim`` (token budget), LlamaIndex ``apostprocess_nodes``/``postprocess_nodes``
(top 3) or LangChain ``acompress_documents``/``compress_documents`` (top 3) over 5-20 short chunks.

Run:  .venv/bin/python -m benchmarks run load-test --threads 1
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import harness as H

SENTENCES = [
    "Bananas are an excellent source of potassium and vitamin B6.",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Mount Everest, at 8,849 metres, is the highest mountain above sea level.",
    "Honey bees tell their nestmates where flowers are with a waggle dance.",
    "Python is a programming language created by Guido van Rossum.",
    "Saturn has the most prominent ring system of any planet.",
    "Photosynthesis turns light energy into chemical energy stored in glucose.",
    "The violin is a string instrument that is usually played with a bow.",
    "The Great Wall of China stretches thousands of kilometres across northern China.",
    "Penguins are flightless birds that live almost only in the Southern Hemisphere.",
    "The Amazon rainforest covers most of the Amazon basin in South America.",
    "Coffee beans are the roasted seeds of the berries of the Coffea plant.",
    "Insulin is a hormone made by the pancreas that regulates blood sugar.",
    "The Pacific is the largest and deepest of the Earth's oceans.",
    "Marie Curie was the first person to win Nobel Prizes in two sciences.",
    "Copper is a soft metal with very high thermal and electrical conductivity.",
    "The human heart has four chambers: two atria and two ventricles.",
    "Tokyo is the capital of Japan and one of the largest cities in the world.",
    "Vaccines train the immune system to recognise a pathogen.",
    "The speed of light in vacuum is about 300,000 kilometres per second.",
    "Spinach is a leafy green vegetable rich in iron.",
    "The Rosetta Stone helped scholars decipher Egyptian hieroglyphs.",
    "Antibiotics kill bacteria but do not work against viruses.",
    "Jupiter is the largest planet in the Solar System.",
]
QUERIES = [
    "Which fruit is rich in potassium?",
    "When was the Eiffel Tower completed?",
    "What is the highest mountain on Earth?",
    "How do bees tell each other where flowers are?",
    "Who created Python?",
    "Which planet has prominent rings?",
    "What regulates blood sugar?",
    "Which metal conducts electricity well?",
    "Who won two Nobel Prizes?",
    "Do antibiotics work against viruses?",
]
KINDS = ["score", "rank", "trim", "llama_index", "langchain"]


@dataclass
class Request:
    idx: int
    kind: str
    query: str
    chunks: list[str]


@dataclass
class Outcome:
    answer: Any = None
    error: str | None = None
    latency_s: float = 0.0
    via: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def make_requests(n: int, seed: int) -> list[Request]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randint(5, 20)
        out.append(Request(i, KINDS[i % len(KINDS)], rng.choice(QUERIES), rng.sample(SENTENCES, k)))
    rng.shuffle(out)
    return out


class Service:
    """One shared scorer and one of each adapter over it (one loaded model)."""

    def __init__(self, heads: str | None, budget: int) -> None:
        from langchain_core.documents import Document
        from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

        from qr_integrations import QRScorer
        from qr_integrations.langchain import QRHeadDocumentCompressor
        from qr_integrations.llama_index import QRHeadNodePostprocessor

        self.Document, self.NodeWithScore, self.QueryBundle, self.TextNode = Document, NodeWithScore, QueryBundle, TextNode
        self.scorer = QRScorer(device="cpu", heads=heads)
        self.post = QRHeadNodePostprocessor(device="cpu", heads=heads, top_n=3)
        self.comp = QRHeadDocumentCompressor(device="cpu", heads=heads, top_n=3)
        self.budget = budget
        _ = self.scorer.loaded
        assert self.post.scorer.loaded is self.scorer.loaded is self.comp.scorer.loaded

    def _nodes(self, r: Request) -> list[Any]:
        return [self.NodeWithScore(node=self.TextNode(text=t, id_=f"n{j}"), score=1.0 / (j + 1))
                for j, t in enumerate(r.chunks)]

    def _docs(self, r: Request) -> list[Any]:
        return [self.Document(page_content=t, id=f"d{j}", metadata={"j": j}) for j, t in enumerate(r.chunks)]

    def call(self, r: Request) -> Any:
        """The sync path."""
        if r.kind == "score":
            return self.scorer.score(r.query, r.chunks)
        if r.kind == "rank":
            return [(it.index, it.score) for it in self.scorer.rank(r.query, r.chunks, top_n=3)]
        if r.kind == "trim":
            t = self.scorer.trim(r.query, r.chunks, max_tokens=self.budget)
            return list(zip(t.indices, t.scores, strict=True))
        if r.kind == "llama_index":
            return [(n.node.node_id, n.score) for n in self.post.postprocess_nodes(self._nodes(r), query_str=r.query)]
        return [(d.id, d.metadata["relevance_score"]) for d in self.comp.compress_documents(self._docs(r), r.query)]

    async def acall(self, r: Request) -> Any:
        """The async path: the adapters' own async methods; core calls through ``asyncio.to_thread``."""
        if r.kind == "llama_index":
            out = await self.post.apostprocess_nodes(self._nodes(r), query_bundle=self.QueryBundle(r.query))
            return [(n.node.node_id, n.score) for n in out]
        if r.kind == "langchain":
            docs = await self.comp.acompress_documents(self._docs(r), r.query)
            return [(d.id, d.metadata["relevance_score"]) for d in docs]
        return await asyncio.to_thread(self.call, r)


def timed(fn: Any, r: Request, via: str) -> Outcome:
    t0 = time.perf_counter()
    try:
        return Outcome(answer=fn(r), latency_s=time.perf_counter() - t0, via=via)
    except Exception as exc:  # a load test counts errors instead of stopping at the first
        return Outcome(error=f"{type(exc).__name__}: {exc}", latency_s=time.perf_counter() - t0, via=via)


async def atimed(svc: Service, r: Request) -> Outcome:
    t0 = time.perf_counter()
    try:
        return Outcome(answer=await svc.acall(r), latency_s=time.perf_counter() - t0, via="asyncio")
    except Exception as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}", latency_s=time.perf_counter() - t0, via="asyncio")


def run_concurrent(svc: Service, reqs: list[Request], workers: int, timeout_s: float) -> tuple[dict[int, Outcome], float]:
    n_threads = max(1, workers // 2)
    n_tasks = max(1, workers - n_threads)
    thread_reqs, async_reqs = reqs[0::2], reqs[1::2]
    results: dict[int, Outcome] = {}
    lock = threading.Lock()

    def async_side() -> None:
        async def worker(queue: asyncio.Queue[Request]) -> None:
            while True:
                try:
                    r = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                out = await atimed(svc, r)
                with lock:
                    results[r.idx] = out

        async def main(argv: list[str] | None = None) -> None:
            queue: asyncio.Queue[Request] = asyncio.Queue()
            for r in async_reqs:
                queue.put_nowait(r)
            await asyncio.wait_for(asyncio.gather(*(worker(queue) for _ in range(n_tasks))), timeout=timeout_s)

        asyncio.run(main())

    t0 = time.perf_counter()
    loop_thread = threading.Thread(target=async_side, name="asyncio-side")
    loop_thread.start()
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        futures = {pool.submit(timed, svc.call, r, "thread"): r for r in thread_reqs}
        for fut, r in futures.items():
            out = fut.result(timeout=timeout_s)  # a deadlock ends the run here instead of hanging it
            with lock:
                results[r.idx] = out
    loop_thread.join(timeout=timeout_s)
    if loop_thread.is_alive():
        raise TimeoutError(f"the asyncio side did not finish within {timeout_s} s")
    return results, time.perf_counter() - t0


def stats(latencies: list[float], wall: float) -> dict[str, float]:
    a = np.asarray(latencies, dtype=float)
    return {
        "requests": len(latencies),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 3),
        "p50_s": round(float(np.percentile(a, 50)), 3),
        "p95_s": round(float(np.percentile(a, 95)), 3),
        "max_s": round(float(a.max()), 3),
        "mean_s": round(float(a.mean()), 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:

    p = H.BenchParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--workers", type=int, default=8, help="half threads, half asyncio tasks")
    p.add_argument("--heads", default=None, help="head set (default: the embedded model's default set)")
    p.add_argument("--budget", type=int, default=60, help="token budget of the trim requests")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a phase counts as deadlocked")
    p.add_argument("--out", default="load_test")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    import torch

    reqs = make_requests(args.requests, args.seed)
    svc = Service(args.heads, args.budget)
    warm = timed(svc.call, reqs[0], "warm-up")  # first-call costs (lazy imports, allocator) stay out of the figures
    assert warm.error is None, warm.error

    t0 = time.perf_counter()
    sequential = {r.idx: timed(svc.call, r, "sequential") for r in reqs}
    seq_wall = time.perf_counter() - t0
    concurrent, con_wall = run_concurrent(svc, reqs, args.workers, args.timeout)

    errors = [f"{i} ({o.via}): {o.error}" for phase in (sequential, concurrent) for i, o in phase.items() if o.error]
    missing = [r.idx for r in reqs if r.idx not in concurrent]
    mismatches = [r.idx for r in reqs if r.idx in concurrent and concurrent[r.idx].answer != sequential[r.idx].answer]
    by_kind = {k: sum(r.kind == k for r in reqs) for k in KINDS}
    chunks = [len(r.chunks) for r in reqs]
    seq_stats = stats([o.latency_s for o in sequential.values()], seq_wall)
    con_stats = stats([o.latency_s for o in concurrent.values()], con_wall)
    via = {v: stats([o.latency_s for o in concurrent.values() if o.via == v], con_wall) for v in ("thread", "asyncio")}
    payload = {
        "settings": {**vars(args), "torch_threads": torch.get_num_threads(), "head_set": svc.scorer.head_set.to_string()
                     if not svc.scorer.head_set.is_all else "all"},
        "requests_by_kind": by_kind,
        "chunks_per_request": {"min": min(chunks), "max": max(chunks), "mean": round(sum(chunks) / len(chunks), 1)},
        "errors": errors,
        "missing": missing,
        "mismatches_vs_sequential": mismatches,
        "sequential": seq_stats,
        "concurrent": con_stats,
        "concurrent_by_side": via,
    }
    rows = [["sequential (1 caller)", *[seq_stats[k] for k in ("requests", "wall_s", "throughput_rps", "p50_s", "p95_s", "max_s")]],
            [f"concurrent ({args.workers // 2} threads + {args.workers - args.workers // 2} asyncio tasks)",
             *[con_stats[k] for k in ("requests", "wall_s", "throughput_rps", "p50_s", "p95_s", "max_s")]]]
    table = H.markdown_table(["phase", "requests", "wall s", "req/s", "p50 s", "p95 s", "max s"], rows, digits=3)
    table += (f"\n\nErrors: {len(errors)}; missing answers: {len(missing)}; concurrent answers differing from "
              f"sequential: {len(mismatches)} of {len(reqs)}.")
    H.write_results(args.out, payload, table)
    print(table)
    return payload
