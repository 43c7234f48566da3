"""Speed and memory: the scorer against a plain forward and the reference, batches, prepared contexts."""

from benchmarks.harness import experiment

experiment(name="speed", topic="speed and memory",
           description="scorer time and peak memory against a plain forward and the slow reference",
           data=("token-lengths",), methods=("qrhead", "plain-forward", "reference"), metrics=("seconds", "peak MiB"),
           result="speed", run="benchmarks.speed:main")
experiment(name="cost", topic="speed and memory",
           description="cost vs context length, 1k..32k tokens: scorer time and memory against plain forwards",
           data=("token-lengths",), methods=("qrhead", "plain-forward", "reference"), metrics=("seconds", "peak MiB"),
           result="cost_{model}", run="benchmarks.cost:main")
experiment(name="depth-budget", topic="speed and memory",
           description="head sets under a depth budget, int8 linear layers and threads: quality against time",
           data=("scifact-retriever-order", "hotpot-retriever-order"), methods=("qrhead", "head-detection"),
           metrics=("ndcg@10", "recall@2", "seconds"), result="depth_budget (report), depth_budget_time (time)",
           run="benchmarks.depth_budget:main", step_required=True,
           steps={"vectors": ("--stage", "vectors"), "time": ("--stage", "time"), "report": ("--stage", "report")})
experiment(name="prepared-context", topic="speed and memory",
           description="many questions over one context: a prepared context against separate calls (time)",
           data=("chat-history",), methods=("qrhead",), metrics=("seconds per question",),
           result="prepared_context[_32k]", run="benchmarks.prepared_context:main")
experiment(name="prepared-context-memory", topic="speed and memory",
           description="peak memory of a prepared context against separate calls (one process per measurement)",
           data=("chat-history",), methods=("qrhead",), metrics=("peak RSS MiB",),
           result="prepared_context_memory[_{kv_dtype}]", run="benchmarks.prepared_context:main", fixed=("--memory",))
experiment(name="long-memory", topic="speed and memory",
           description="a long multi-session history prepared once, then many questions scored and trimmed",
           data=("long-history",), methods=("qrhead", "bm25"), metrics=("recall@5", "seconds"),
           result="long_memory", run="benchmarks.long_memory:main")
experiment(name="batch", topic="speed and memory",
           description="score_batch against one score call per pair: throughput on the CPU",
           data=("scifact-retriever-order",), methods=("qrhead",), metrics=("pairs per second",),
           result="batch", run="benchmarks.batch:main")
