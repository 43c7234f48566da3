"""Heads: detecting QR heads and whether they transfer."""

from benchmarks.harness import experiment

experiment(name="detect-heads", topic="heads",
           description="detect QR heads on training data (SciFact, HotpotQA 0-49), evaluate on held-out data",
           data=("heads-detect", "heads-eval"), methods=("head-detection", "qrhead", "bm25"),
           metrics=("ndcg@10", "recall@10", "recall@2"), result="heads_detect_{model}, heads_eval_{model}",
           run="benchmarks.detect_heads:main",
           steps={"all": ("--stage", "all"), "collect": ("--stage", "collect"), "detect": ("--stage", "detect"),
                  "eval": ("--stage", "eval"), "report": ("--stage", "report")})
experiment(name="layout-heads", topic="heads",
           description="do heads detected in one prompt layout transfer to the other? (HotpotQA, BM25 order)",
           data=("hotpot-bm25-order",), methods=("head-detection", "qrhead"), metrics=("recall@2",),
           result="layout_heads_hotpotqa_smollm2", run="benchmarks.layout_heads:main")
