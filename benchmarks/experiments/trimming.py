"""Trimming: answers generated from full, trimmed and gold contexts."""

from benchmarks.harness import experiment

experiment(name="trim-generate", topic="trimming",
           description="HotpotQA answer EM/F1 from the full context, top-2/3 by each ranker, and the gold paragraphs",
           data=("hotpot-answers",), methods=("qrhead", "all-heads", "dense", "bm25", "generate"),
           metrics=("em", "f1", "both gold kept"), result="trim_generate_{model}", run="benchmarks.trim_generate:main")
experiment(name="trim-generate-long", topic="trimming",
           description="answers from a 100-paragraph HotpotQA pool, whole or trimmed (from long-context records; "
                       "--longllmlingua adds LongLLMLingua at the same budget)",
           data=("hotpot-pools",), methods=("qrhead-cross-window", "bm25", "dense", "longllmlingua", "generate"),
           metrics=("em", "f1", "prompt tokens"), result="long_generate_{generator}",
           run="benchmarks.long_generate:main")
experiment(name="trim-generate-retriever-order", topic="trimming",
           description="answers after the LangChain compressor's defaults trim BM25/dense-ordered HotpotQA paragraphs",
           data=("hotpot-retriever-order",), methods=("langchain-compressor", "bm25", "dense", "generate"),
           metrics=("em", "f1", "both gold kept"), result="retriever_order_generate_{generator}",
           run="benchmarks.retriever_order:main", fixed=("--dataset", "hotpotqa", "--generate"))
