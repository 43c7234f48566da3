"""Position: how much where a chunk is written moves its score, and the corrections."""

from benchmarks.harness import experiment

_BIAS = {"topic": "position", "methods": ("qrhead-corrections", "bm25", "dense"), "run": "benchmarks.position_bias:main"}

experiment(name="position-hotpot", **_BIAS,
           description="position bias and its corrections on 20 shuffled HotpotQA paragraphs (--split dev|test)",
           data=("hotpot-shuffled",), metrics=("recall@5", "recall@2", "position z-score"),
           result="position_hotpot_{split}_{model}", fixed=("--dataset", "hotpot"))
experiment(name="position-hotpot-line", **_BIAS,
           description="the same pools with each paragraph cut to its first sentence (one line)",
           data=("hotpot-shuffled",), metrics=("recall@5", "recall@2", "position z-score"),
           result="position_hotpot_line_{split}_{model}", fixed=("--dataset", "hotpot_line"))
experiment(name="position-scifact", **_BIAS,
           description="position bias and its corrections on SciFact's BM25 top 20, shuffled (--split dev|test)",
           data=("scifact-shuffled",), metrics=("ndcg@10", "recall@5", "position z-score"),
           result="position_scifact_{split}_{model}", fixed=("--dataset", "scifact"))
experiment(name="position-identical", **_BIAS,
           description="the spread of 5 identical gold paragraphs' scores among 5 distractors",
           data=("hotpot-identical",), metrics=("recall@5", "recall@2", "identical spread"),
           result="position_identical_all_{model}", fixed=("--dataset", "identical"))
experiment(name="position-effects", topic="position",
           description="chunk-order effects: the gold chunk at every position; SciFact in BM25, reversed, shuffled order",
           data=("hand-written", "scifact-bm25"), methods=("qrhead",),
           metrics=("gold rank by position", "ndcg@10", "top-1 changes", "spearman"),
           result="position_effects", run="benchmarks.position:main")
experiment(name="position-long", topic="position",
           description="100-paragraph HotpotQA pools read whole or through a shortlist, with each prior (--split dev|test)",
           data=("hotpot-pools",), methods=("qrhead-corrections", "bm25", "dense"),
           metrics=("recall@5", "recall@10", "recall@2"), result="position_long_{split}_{model}",
           run="benchmarks.position_long:main")
experiment(name="position-choose", topic="position",
           description="the rule that picks the defaults: best mean of four dev-split metrics at <= 2 passes",
           data=("hotpot-shuffled", "scifact-shuffled", "hotpot-pools"), methods=("qrhead-corrections",),
           metrics=("recall@5", "ndcg@10"), result="position_choice_{model}", run="benchmarks.choose_defaults:main")
