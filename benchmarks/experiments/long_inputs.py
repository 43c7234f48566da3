"""Long inputs: past the model's window, cross-window strategies against BM25 and dense; needle in a haystack."""

from benchmarks.harness import experiment

_LONG = {"topic": "long inputs", "run": "benchmarks.long_context:main",
         "methods": ("qrhead-cross-window", "bm25", "dense")}

experiment(name="long-context-hotpotqa", **_LONG,
           description="pools of 10 HotpotQA questions (100 paragraphs) scored past one window; --from-records re-reports",
           data=("hotpot-pools",), metrics=("recall@2", "recall@5", "tokens run"),
           result="long_context_hotpotqa[_merge{merge}]_{model}", fixed=("--task", "hotpotqa"))
experiment(name="long-context-scifact", **_LONG,
           description="each SciFact query's BM25 top-100 abstracts as one long input",
           data=("scifact-pools",), metrics=("ndcg@10", "recall@10", "tokens run"),
           result="long_context_scifact_{model}", fixed=("--task", "scifact"))
experiment(name="niah", topic="long inputs",
           description="needle in a haystack: is the planted fact's chunk ranked first and kept by trim?",
           data=("scifact-haystack",), methods=("qrhead", "all-heads", "bm25", "dense"), metrics=("top-1", "kept by trim"),
           result="niah_{model}", run="benchmarks.niah:main")
