"""Re-ranking: QRHead against BM25, dense and the LlamaIndex LLM re-rankers, and the adapters in retriever order."""

from benchmarks.harness import experiment

_ORDER = {"topic": "retriever-order re-ranking", "run": "benchmarks.retriever_order:main",
          "methods": ("langchain-compressor", "llama-index-postprocessor", "qrhead", "fusion", "bm25", "dense"),
          "steps": {"score": (), "report": ("--report",)}}

experiment(name="retriever-order-scifact", **_ORDER,
           description="the adapters at their defaults on SciFact's BM25 and dense top-k, best first",
           data=("scifact-retriever-order",), metrics=("ndcg@10", "recall@10"),
           result="retriever_order_scifact_{model}", fixed=("--dataset", "scifact"))
experiment(name="retriever-order-hotpotqa", **_ORDER,
           description="the adapters at their defaults on HotpotQA's 10 paragraphs in BM25 and dense order",
           data=("hotpot-retriever-order",), metrics=("recall@2", "recall@5", "ndcg@10"),
           result="retriever_order_hotpotqa_{model}", fixed=("--dataset", "hotpotqa"))
experiment(name="rerank-scifact", topic="retriever-order re-ranking",
           description="SciFact BM25 top-k re-ranked by QRHead, all heads, dense and the LlamaIndex LLM re-rankers",
           data=("scifact-bm25",), methods=("bm25-order", "dense", "all-heads", "qrhead", "rankgpt", "llmrerank"),
           metrics=("ndcg@10", "recall@10", "latency"), result="scifact_rerank_{model}_{order}_k{k}",
           run="benchmarks.rerank_scifact:main")
experiment(name="hotpot-evidence", topic="retriever-order re-ranking",
           description="HotpotQA supporting-paragraph recall among 10: QRHead, all heads, BM25, dense, LLM re-rankers",
           data=("hotpot-distractor",), methods=("bm25", "dense", "all-heads", "qrhead", "rankgpt", "llmrerank"),
           metrics=("recall@2", "recall@5", "latency"), result="hotpot_evidence_{model}",
           run="benchmarks.hotpot_evidence:main")
experiment(name="hotpot-crossfit", topic="retriever-order re-ranking",
           description="HotpotQA recall on all 100 questions with QR heads detected by cross-fitting",
           data=("hotpot-distractor",), methods=("bm25", "dense", "all-heads", "qrhead", "head-detection"),
           metrics=("recall@2", "recall@5"), result="hotpot_crossfit_{model}", run="benchmarks.hotpot_crossfit:main")
