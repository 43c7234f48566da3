"""Serving: HTTP latency and throughput, concurrency, and big or odd input."""

from benchmarks.harness import experiment

experiment(name="serving", topic="serving",
           description="HTTP latency and throughput, uvicorn against Ray Serve; Ray Data rows/s (idle machine)",
           data=("http-requests",), methods=("qrhead", "http-serve"), metrics=("p50 s", "p95 s", "req/s"),
           result="serving", run="benchmarks.serving:main")
experiment(name="load-test", topic="serving",
           description="many mixed requests from threads and asyncio tasks against one shared scorer",
           data=("request-mix",), methods=("qrhead", "langchain-compressor", "llama-index-postprocessor"),
           metrics=("errors", "mismatches", "p50 s", "p95 s"), result="load_test", run="benchmarks.load:main")
experiment(name="stress", topic="serving",
           description="big and odd input, once: 1,000 chunks, one 50k-token chunk, a random-input fuzz run",
           data=("fuzz-inputs",), methods=("qrhead",), metrics=("seconds", "peak RSS MiB", "errors"),
           result="stress", run="benchmarks.stress:main")
