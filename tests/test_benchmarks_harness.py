"""The benchmark harness: data loading, metrics, selection, caching and result files (no model, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import harness as H


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    docs = [
        {"_id": "d1", "title": "Bananas", "text": "Bananas are rich in potassium."},
        {"_id": "d2", "title": "", "text": "Paris is the capital of France."},
        {"_id": "d3", "title": "Cats", "text": "Cats purr when content."},
    ]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    queries = [{"_id": "q1", "text": "potassium fruit"}, {"_id": "q2", "text": "capital of France"}]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    cands = [{"query_id": "q1", "candidates": [["d2", 3.0], ["d1", 2.0], ["d3", 1.0]]},
             {"query_id": "q2", "candidates": [["d2", 5.0], ["d3", 1.0]]}]
    (root / "bm25.jsonl").write_text("\n".join(json.dumps(c) for c in cands) + "\n")
    return root


def test_load_beir_reads_corpus_queries_and_qrels(beir_dir: Path) -> None:
    data = H.load_beir(beir_dir, "test")
    assert data.corpus["d1"] == ("Bananas", "Bananas are rich in potassium.")
    assert data.corpus["d2"][0] == ""
    assert data.queries == {"q1": "potassium fruit", "q2": "capital of France"}
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}  # header line skipped


def test_load_candidates_keeps_order_and_scores(beir_dir: Path) -> None:
    cands = H.load_candidates(beir_dir / "bm25.jsonl")
    assert cands["q1"] == [("d2", 3.0), ("d1", 2.0), ("d3", 1.0)]


def test_evaluate_matches_hand_computed_ndcg_and_recall(beir_dir: Path) -> None:
    data = H.load_beir(beir_dir, "test")
    cands = H.load_candidates(beir_dir / "bm25.jsonl")
    run = {q: H.ranking_to_run([d for d, _ in c], [s for _, s in c]) for q, c in cands.items()}
    mean, per_query = H.evaluate(data.qrels, run, ["ndcg@10", "recall@1"])
    # q1: the relevant doc at rank 2 -> nDCG = 1/log2(3); q2: at rank 1 -> 1
    assert per_query["ndcg@10"]["q1"] == pytest.approx(1 / 1.5849625, rel=1e-6)
    assert per_query["ndcg@10"]["q2"] == pytest.approx(1.0)
    assert mean["recall@1"] == pytest.approx(0.5)


def test_evaluate_ignores_queries_without_judgements() -> None:
    _, per_query = H.evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}, "other": {"a": 1.0}}, ["recall@1"])
    assert list(per_query["recall@1"]) == ["q"]
    with pytest.raises(ValueError):
        H.evaluate({"q": {"a": 1}}, {"other": {"a": 1.0}}, ["recall@1"])


def test_ranking_ties_keep_input_order() -> None:
    run = H.ranking_to_run(["a", "b", "c"], [1.0, 1.0, 0.5])
    assert sorted(run, key=run.get, reverse=True) == ["a", "b", "c"]
    scores = H.order_to_scores([2, 0], 4)
    assert sorted(range(4), key=lambda i: -scores[i]) == [2, 0, 1, 3]


def test_budget_select_follows_trim_rules() -> None:
    # best first, an overflowing chunk is skipped and a smaller one after it still fits
    assert H.budget_select([0.9, 0.8, 0.1], [700, 400, 200], max_tokens=1000) == [0, 2]
    assert H.budget_select([0.1, 0.5, 0.3], [1, 1, 1], None, top_n=2) == [1, 2]


def test_answer_metrics() -> None:
    assert H.exact_match("The Eiffel Tower.", "eiffel tower") == 1.0
    assert H.token_f1("yes", "no") == 0.0
    assert H.token_f1("big red cat", "red cat") == pytest.approx(0.8)


def test_latency_stats_and_timer() -> None:
    t = H.Timer()
    with t("x"):
        pass
    t.add("x", 1.0)
    s = t.summary()["x"]
    assert s["n"] == 2 and s["median_s"] >= 0
    assert H.latency_stats([]) ["n"] == 0


def test_jsonl_cache_resumes(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    c = H.JsonlCache(path)
    calls = []
    assert c.get_or_compute("k", lambda: calls.append(1) or [1, 2]) == [1, 2]
    again = H.JsonlCache(path)
    assert again.get_or_compute("k", lambda: calls.append(1) or [3]) == [1, 2]
    assert len(calls) == 1
    assert H.cache_key("a", 1) == H.cache_key("a", 1) != H.cache_key("a", 2)
    value, seconds = again.timed("t", lambda: [7])
    assert value == [7] and seconds >= 0
    assert H.JsonlCache(path).timed("t", lambda: [8]) == (value, seconds)  # cached with its timing


def test_write_results_writes_json_and_markdown(tmp_path: Path) -> None:
    table = H.markdown_table(["method", "nDCG@10"], [["bm25", 0.67891], ["qrhead", float("nan")]])
    assert "| bm25 | 0.679 |" in table and "| qrhead | nan |" in table
    from benchmarks import experiments  # noqa: F401 - registers them

    with H.running(H.find_experiment("rerank-scifact"), ["--limit", "3"]):
        jpath, mpath = H.write_results("demo", {"results": [{"method": "bm25", "ndcg@10": 0.6789}]}, table, tmp_path)
    rec = json.loads(jpath.read_text())
    assert rec["name"] == "demo" and rec["results"][0]["method"] == "bm25"
    assert "versions" in rec["environment"]
    assert rec["command"] == ".venv/bin/python -m benchmarks run rerank-scifact --limit 3"
    assert mpath.read_text().startswith("| method | nDCG@10 |")


def test_cut_words_and_model_tags() -> None:
    assert H.cut_words("a b  c d", 2) == "a b"
    assert H.cut_words("a b", None) == "a b"
    assert H.model_tag("smollm2") == "smollm2" and H.model_tag("qwen") == "qwen0.5b"
    assert H.resolve_model("embedded") is None


def test_heatmap_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = H.heatmap([[1.0, 0.5], [0.0, float("nan")]], ["2k", "4k"], ["0%", "100%"], "t", tmp_path / "h.png")
    assert out.is_file() and out.stat().st_size > 1000


def test_paired_tests_tell_a_real_gap_from_noise() -> None:
    qids = [f"q{i}" for i in range(30)]
    qrels = {q: {"gold": 1} for q in qids}
    best = {q: {"gold": 3.0, "a": 2.0, "b": 1.0} for q in qids}  # gold first everywhere
    worst = {q: {"gold": 1.0, "a": 3.0, "b": 2.0} for q in qids}  # gold last everywhere
    coin = {q: (best[q] if i % 2 else worst[q]) for i, q in enumerate(qids)}  # first on half of them
    coin_shifted = {q: (worst[q] if i % 2 else best[q]) for i, q in enumerate(qids)}
    tests = H.paired_tests(qrels, {"best": best, "worst": worst, "coin": coin}, "best", "ndcg@10")
    assert tests["worst"]["wins_ties_losses"] == [30, 0, 0] and tests["worst"]["p"] < 0.01
    assert tests["coin"]["wins_ties_losses"] == [15, 15, 0]
    even = H.paired_tests(qrels, {"coin": coin, "shifted": coin_shifted}, "coin", "ndcg@10")["shifted"]
    assert even["wins_ties_losses"] == [15, 0, 15] and even["p"] > 0.5
    line = H.describe_tests(tests, {"worst": "W", "coin": "C"}, "best", "nDCG@10")
    assert "W p < 0.001" in line and "30 queries" in line
    assert H.format_p(0.0421) == "p = 0.042"


def test_crossfit_never_picks_heads_with_the_scored_questions() -> None:
    import numpy as np

    from benchmarks.hotpot_crossfit import crossfit_sets

    heads = [(0, 0), (0, 1), (1, 0)]
    # questions 0-1 reward head (0, 0); questions 2-3 reward head (1, 0)
    per_head = np.array([[0.9, 0.1, 0.2], [0.8, 0.2, 0.1], [0.1, 0.2, 0.9], [0.2, 0.1, 0.8]])
    sets = crossfit_sets(per_head, heads, folds=2, top_k=1)
    assert [list(t) for t, _, _ in sets] == [[0, 1], [2, 3]]
    assert [hs.heads for _, hs, _ in sets] == [((1, 0),), ((0, 0),)]  # each block gets the other block's best
    changed = per_head.copy()
    changed[:2] = 0.0  # the first block's own labels cannot move its set
    assert crossfit_sets(changed, heads, folds=2, top_k=1)[0][1].heads == ((1, 0),)


def test_head_table_scores_each_head_alone() -> None:
    import torch

    from benchmarks.headvectors import HeadVectors
    from benchmarks.hotpot_crossfit import head_table

    # two heads, three one-token chunks: head (0, 0) attends to chunk 2 (gold), head (0, 1) to chunk 0
    mat = torch.tensor([[0.0, 0.1, 0.9], [0.9, 0.1, 0.0]])
    hv = HeadVectors(heads=((0, 0), (0, 1)), n_chunks=3, windows=[([0, 1, 2], [(0, 1), (1, 2), (2, 3)], mat)])
    table = head_table([hv], ["q"], {"q": {"2": 1}}, std=None, hide=True)
    assert table.shape == (1, 2)
    assert table[0, 0] == pytest.approx(1.0)
    assert table[0, 1] == pytest.approx(0.5)  # gold ranked third of three


def test_paired_score_test_tells_a_real_gap_from_noise() -> None:
    high = [0.8, 0.9, 0.7, 1.0, 0.6, 0.9, 0.8, 0.7, 0.9, 1.0]
    better = H.paired_score_test(high, [x - 0.65 for x in high])
    assert better["wins_ties_losses"] == [10, 0, 0] and better["p"] < 0.01 and better["mean_diff"] > 0.6
    swapped = H.paired_score_test([1.0, 0.0] * 10, [0.0, 1.0] * 10)
    assert swapped["wins_ties_losses"] == [10, 0, 10] and swapped["p"] > 0.5 and swapped["mean_diff"] == 0.0
    with pytest.raises(ValueError, match="aligned"):
        H.paired_score_test([1.0, 2.0], [1.0])


def test_prefix_generate_answers_as_separate_calls(scorer) -> None:  # type: ignore[no-untyped-def]
    """The long trim-then-generate benchmark reuses one pool's KV cache across questions: greedy answers must
    be token for token those of separate calls (the embedded model, three prompts sharing a long prefix), and it
    hands the cache over by the keyword the installed transformers has not deprecated."""
    import warnings

    import torch

    from benchmarks.long_generate import common_prefix, prefix_generate
    from benchmarks.trim_generate import generator

    gen, tok = generator(scorer)
    context = " ".join(f"Fact {i}: the {c} box holds {i * 7} marbles." for i, c in enumerate(
        ["red", "blue", "green", "white", "black", "pink"] * 4))
    prompts = [tok(f"{context}\nQuestion: {q}\nAnswer:")["input_ids"] for q in (
        "How many marbles are in the red box?", "Which box holds 14 marbles?", "Name a colour.")]
    assert common_prefix(prompts) > 100
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # transformers' deprecated `past_key_values` keyword
        shared = prefix_generate(gen, prompts, 8, pad)
    with torch.inference_mode():
        for ids, (new, _) in zip(prompts, shared, strict=True):
            x = torch.tensor([ids])
            alone = gen.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=8, do_sample=False, pad_token_id=pad)
            assert new == alone[0, len(ids):].tolist()
