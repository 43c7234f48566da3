"""Serving and scale-out (issue #13): HTTP latency and throughput, uvicorn against Ray Serve; Ray Data rows/s.

All in one process tree on one machine, against an in-process baseline measured in the same run:

1. **in process**: ``QRScorer.rank`` over the request set, one after another (the floor per request);
2. **HTTP**: requests like those as Cohere v2 ``POST /v2/rerank`` calls (fresh documents in every phase, so
   the server's prefix cache stays cold; one more uvicorn phase repeats the last documents with new queries to
   show what the cache buys), from 1 client and from 8 concurrent
   clients, against ``qr-integrations serve`` (uvicorn, one process), then ``serve --ray`` with 1 and 2 replicas;
   p50/p95 latency and requests/s;
3. **batch**: the same rows through ``rerank_dataset`` with 1 and 2 Ray Data actors, and an in-process loop.

Every server, replica and actor pins one torch thread (``--threads``). Requests: a query and 10 passages of
about 50 words (a ~900-token prompt), seeded. On a 2-core machine, Ray's own processes share the cores with
the replicas, and a second replica or actor has at most one more core to use.

Run (on an otherwise idle machine):  .venv/bin/python -m benchmarks run serving --threads 1
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import harness as H

WORDS = [
    "potassium", "banana", "river", "mountain", "tower", "python", "bees", "flower", "planet", "ring", "glucose",
    "energy", "light", "violin", "bow", "string", "capital", "france", "paris", "wall", "china", "ocean", "salt",
    "rain", "forest", "basin", "amazon", "code", "language", "release", "version", "tree", "root", "leaf", "seed",
    "soil", "water", "heat", "cold", "ice", "snow", "wind", "storm", "cloud", "sky", "blue", "green",
]


def make_requests(n: int, docs: int = 10, words: int = 50, seed: int = 0) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        passages = [" ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "." for _ in range(docs)]
        query = "What about " + " ".join(rng.choice(WORDS) for _ in range(6)) + "?"
        out.append((query, passages))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not become ready in {timeout} s")


def load(url: str, requests: list[tuple[str, list[str]]], clients: int, desc: str, quiet: bool) -> dict[str, float]:
    """Send every request (``clients`` at a time); latency p50/p95 and requests/s over the wall time."""
    import httpx

    def one(req: tuple[str, list[str]]) -> float:
        t0 = time.perf_counter()
        r = httpx.post(f"{url}/v2/rerank", json={"query": req[0], "documents": req[1]}, timeout=600)
        r.raise_for_status()
        return time.perf_counter() - t0

    one((requests[0][0], requests[0][1][:2]))  # warm-up (other documents: the cache stays cold)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lat = list(H.progress(pool.map(one, requests), total=len(requests), desc=desc, disable=quiet))
    wall = time.perf_counter() - t0
    a = np.asarray(lat)
    return {"clients": clients, "requests": len(requests), "p50_s": float(np.percentile(a, 50)),
            "p95_s": float(np.percentile(a, 95)), "req_per_s": len(requests) / wall, "wall_s": wall}


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = H.common_parser(__doc__ or "")
    p.add_argument("--requests", type=int, default=24, help="requests per HTTP load phase")
    p.add_argument("--rows", type=int, default=24, help="rows per Ray Data phase")
    p.add_argument("--skip-ray", action="store_true", help="only the uvicorn server")
    args = p.parse_args(argv)
    threads = args.threads or 1
    H.setup_torch(threads)
    quiet = args.no_progress
    from qr_integrations import QRScorer

    requests = make_requests(args.requests)
    config = {"device": "cpu", "num_threads": threads, "layout": "reversed"}
    scorer = QRScorer(config=config)
    _ = scorer.loaded
    scorer.rank(*requests[0])
    per_request = [timed(lambda r=r: scorer.rank(*r)) for r in H.progress(requests, desc="in process", disable=quiet)]
    base = {"p50_s": float(np.percentile(per_request, 50)), "p95_s": float(np.percentile(per_request, 95)),
            "req_per_s": len(per_request) / sum(per_request)}
    results: dict[str, Any] = {"in_process": base, "http": {}, "batch": {}}

    # real `qr-integrations serve` processes: uvicorn, then Ray Serve (its own local Ray) with 1 and 2 replicas
    servers = [("uvicorn", [])]
    if not args.skip_ray:
        servers += [(f"Ray Serve {r} replica(s)", ["--ray", "--replicas", str(r)]) for r in (1, 2)]
    results["startup_s"] = {}
    seeds = iter(range(100, 200))
    for name, extra in servers:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "qr_integrations.cli", "serve", "--port", str(port),
                                 "--device", "cpu", "--threads", str(threads), "--quiet", *extra],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            t0 = time.perf_counter()
            wait_ready(f"http://127.0.0.1:{port}")
            results["startup_s"][name] = time.perf_counter() - t0
            for clients in (1, 8):
                # fresh documents in every phase, so the server's prefix cache never hits (measured apart below)
                fresh = make_requests(args.requests, seed=next(seeds))
                results["http"][f"{name}, {clients} client(s)"] = load(f"http://127.0.0.1:{port}", fresh, clients,
                                                                       f"{name} x{clients}", quiet)
            if name == "uvicorn":  # the same documents again, new queries: the prefix cache's share
                # the last 12 only: what a 512 MiB LRU of ~30 MiB prefixes still holds
                again = [(f"And {q[0].lower()}{q[1:]}", docs) for q, docs in fresh[-12:]]
                results["http"]["uvicorn, 8 client(s), documents seen before (prefix cache)"] = load(
                    f"http://127.0.0.1:{port}", again, 8, "uvicorn again", quiet)
        finally:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: Ray's driver shuts its local cluster down on the way out
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

    if not args.skip_ray:
        import ray

        from qr_integrations.ray import rerank_dataset, start_local_ray

        t0 = time.perf_counter()
        start_local_ray(num_cpus=(os.cpu_count() or 2) + 1)  # logical: room for Ray Data's own tasks beside 2 actors
        results["startup_s"]["Ray local cluster (for Ray Data)"] = time.perf_counter() - t0
        rows = [{"id": i, "query": q, "chunks": c} for i, (q, c) in enumerate(make_requests(args.rows, seed=1))]
        loop_s = timed(lambda: [scorer.score(r["query"], r["chunks"]) for r in rows])
        results["batch"]["in-process loop"] = {"rows_per_s": len(rows) / loop_s, "wall_s": loop_s}
        for actors in (1, 2):
            def run(rs: list[dict[str, Any]], a: int = actors) -> float:
                return timed(lambda: rerank_dataset(ray.data.from_items(rs), config=config, actors=a,
                                                    batch_size=2).take_all())

            first = run(rows[: 2 * actors])  # start-up: the actors load their models, one batch each
            wall = run(rows)
            steady = (len(rows) - 2 * actors) / max(wall - first, 1e-9)
            results["batch"][f"Ray Data, {actors} actor(s)"] = {
                "rows_per_s": len(rows) / wall, "wall_s": wall, "steady_rows_per_s": steady, "startup_run_s": first}
        ray.shutdown()

    http_rows = [[name, r["p50_s"], r["p95_s"], r["req_per_s"], r["req_per_s"] / base["req_per_s"]]
                 for name, r in results["http"].items()]
    http_rows.insert(0, ["in process (QRScorer.rank), 1 at a time", base["p50_s"], base["p95_s"], base["req_per_s"], 1.0])
    loop_rate = results["batch"]["in-process loop"]["rows_per_s"] if results["batch"] else 1.0
    batch_rows = [[name, r["rows_per_s"], r["wall_s"], r["rows_per_s"] / loop_rate,
                   r.get("steady_rows_per_s", r["rows_per_s"]), r.get("steady_rows_per_s", r["rows_per_s"]) / loop_rate]
                  for name, r in results["batch"].items()]
    table = (H.markdown_table(["path", "p50 s", "p95 s", "req/s", "x in process"], http_rows, digits=3)
             + "\n\n" + (H.markdown_table(["batch path", "rows/s (all)", "wall s", "x loop", "rows/s (start-up removed)", "x loop"],
                                           batch_rows, digits=3)
                         if batch_rows else "")
             + "\n\nStart-up (s): " + ", ".join(f"{k} {v:.1f}" for k, v in results["startup_s"].items()))
    bars = {"req/s": {name: r["req_per_s"] for name, r in results["http"].items()}}
    bars["req/s"]["in process"] = base["req_per_s"]
    H.publish("serving", {"results": results, "threads": threads, "requests": args.requests, "rows": args.rows},
              table, bars, "Rerank requests per second (2-core CPU, 135M model)", "requests / s")
