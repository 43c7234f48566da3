"""Head detection: metrics against hand-computed values, the ranking step on constructed scores (a planted
perfect head comes first), example parsing, head-set YAML, the shipped default, and the CLI end to end on a
tiny randomly initialised model (no network, no shared data)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from qr_integrations import DetectionError, DetectionExample, HeadSet, HeadSetError, QRScorer, detect_heads, rank_heads
from qr_integrations.cli import main as cli_main
from qr_integrations.core.config import QRHEAD_SCORING
from qr_integrations.core.detection import (
    HeadRanking,
    check_metric,
    collect_head_scores,
    ndcg_at_k,
    qrscore,
    rank_head_scores,
    read_examples,
)
from qr_integrations.core.heads import available_head_sets, default_head_set_for

LOG2 = math.log2


# ---------------------------------------------------------------- metrics, hand-computed
def test_ndcg_binary_hand_computed() -> None:
    # one gold, ranked 3rd: DCG = 1/log2(4) = 0.5, IDCG = 1
    assert ndcg_at_k([0.9, 0.8, 0.1, 0.7], [0, 0, 0, 1]) == pytest.approx(0.5)
    # two golds ranked 1st and 3rd: (1 + 1/log2(4)) / (1 + 1/log2(3))
    assert ndcg_at_k([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx((1 + 0.5) / (1 + 1 / LOG2(3)))
    assert ndcg_at_k([0.1, 0.2], [0, 0]) == 0.0


def test_ndcg_graded_hand_computed() -> None:
    # order: idx1 (rel 2), idx2 (0), idx3 (1), idx0 (0); linear gain
    dcg = 2 / LOG2(2) + 0 + 1 / LOG2(4)
    idcg = 2 / LOG2(2) + 1 / LOG2(3)
    assert ndcg_at_k([0.1, 0.4, 0.3, 0.2], [0, 2, 0, 1]) == pytest.approx(dcg / idcg)


def test_ndcg_cutoff_ties_and_ideal() -> None:
    scores = list(range(12, 0, -1))  # chunk i ranked i+1
    rel = [0] * 12
    rel[10] = 1  # ranked 11th: outside the top 10
    assert ndcg_at_k(scores, rel, k=10) == 0.0
    assert ndcg_at_k(scores, rel, k=11) == pytest.approx(1 / LOG2(12))
    # ties keep input order: the gold (index 1) is second
    assert ndcg_at_k([0.5, 0.5], [0, 1]) == pytest.approx(1 / LOG2(3))
    # a relevant document missing from the candidates lowers the ideal-normalized score
    assert ndcg_at_k([0.9, 0.1], [1, 0], ideal=[1, 1]) == pytest.approx(1 / (1 + 1 / LOG2(3)))
    with pytest.raises(DetectionError, match="aligned"):
        ndcg_at_k([0.1, 0.2], [1])


def test_qrscore_hand_computed() -> None:
    assert qrscore([0.02, 0.30, -0.01, 0.05], [0, 1, 0, 2]) == pytest.approx(0.35)
    assert qrscore([0.5, -0.2], [0, 1]) == pytest.approx(-0.2)
    # ranking by QRScore averages the per-example gold mass over examples
    mass = [np.array([[0.1, 0.4], [0.3, 0.0]]), np.array([[0.2, 0.2], [0.0, 0.6]])]
    r = rank_heads(mass, [[0, 1], [1, 1]], heads=[(0, 0), (0, 1)], metric="qrscore")
    assert r.values.tolist() == pytest.approx([(0.4 + 0.4) / 2, (0.0 + 0.6) / 2])
    assert r.top(1)[0][0] == (0, 0)


def test_metric_names() -> None:
    assert check_metric("nDCG@10") == "ndcg@10"
    assert check_metric("ndcg@5") == "ndcg@5"
    assert check_metric("QR_Score") == "qrscore"
    for bad in ("mrr", "ndcg@0", "ndcg"):
        with pytest.raises(DetectionError, match="unknown metric"):
            check_metric(bad)


# ---------------------------------------------------------------- the ranking step, planted head
def _synthetic(planted: tuple[int, int], n_examples: int = 8, layers: int = 30, heads: int = 9, seed: int = 0):
    rng = np.random.default_rng(seed)
    head_list = [(la, h) for la in range(layers) for h in range(heads)]
    row = head_list.index(planted)
    mats, rels = [], []
    for _ in range(n_examples):
        n_chunks = 20
        rel = np.zeros(n_chunks)
        gold = rng.choice(n_chunks, size=2, replace=False)
        rel[gold] = 1
        m = rng.normal(scale=0.05, size=(len(head_list), n_chunks))  # calibrated attention mass scale
        m[:, gold] += 0.04  # every head is a bit informative
        m[row] = rng.uniform(0, 0.1, size=n_chunks)
        m[row, gold] = 1.0 + rng.uniform(0, 0.1, size=2)  # the planted head is perfect
        mats.append(m)
        rels.append(rel)
    return head_list, mats, rels


@pytest.mark.parametrize("metric", ["ndcg@10", "qrscore"])
def test_planted_perfect_head_is_found_first(metric: str) -> None:
    planted = (17, 4)
    head_list, mats, rels = _synthetic(planted)
    ranking = rank_heads(mats, rels, heads=head_list, metric=metric, num_layers=30, num_heads=9, model="toy")
    assert ranking.top(1)[0][0] == planted
    if metric == "ndcg@10":
        assert ranking.top(1)[0][1] == pytest.approx(1.0)
    hs = ranking.head_set(16, name="toy-planted")
    assert hs.heads is not None and hs.heads[0] == planted and len(hs.heads) == 16
    assert hs.scores is not None and list(hs.scores) == sorted(hs.scores, reverse=True)
    assert (hs.num_layers, hs.num_heads, hs.model, hs.metric) == (30, 9, "toy", metric)
    grid = ranking.grid()
    assert grid.shape == (30, 9) and np.nanargmax(grid) == 17 * 9 + 4


def test_rank_heads_errors() -> None:
    heads = [(0, 0), (0, 1)]
    with pytest.raises(DetectionError, match="no gold"):
        rank_heads([np.zeros((2, 3))], [[0, 0, 0]], heads=heads)
    with pytest.raises(DetectionError, match="shape"):
        rank_heads([np.zeros((3, 3))], [[0, 1, 0]], heads=heads)
    with pytest.raises(DetectionError, match="relevance lists"):
        rank_heads([np.zeros((2, 3))], [], heads=heads)
    r = rank_heads([np.array([[0.0, 1.0], [1.0, 0.0]])], [[0, 1]], heads=heads)
    with pytest.raises(DetectionError, match="only 2 heads"):
        r.head_set(3)
    with pytest.raises(DetectionError, match="positive"):
        r.head_set(0)


# ---------------------------------------------------------------- examples
def test_example_forms() -> None:
    chunks = ["a", "b", "c"]
    assert DetectionExample.from_obj(("q", chunks, [2])).relevance == (0.0, 0.0, 1.0)
    assert DetectionExample.from_obj(("q", chunks, [0, 2], [3, 1])).relevance == (3.0, 0.0, 1.0)
    assert DetectionExample.from_obj({"query": "q", "chunks": chunks, "gold": {"1": 2}}).relevance == (0.0, 2.0, 0.0)
    with_ids = [{"id": "x", "text": "a"}, {"id": "y", "title": "T", "text": "b"}]
    assert DetectionExample.from_obj({"query": "q", "chunks": with_ids, "gold": ["y"]}).relevance == (0.0, 1.0)
    with pytest.raises(DetectionError, match="no gold"):
        DetectionExample.from_obj(("q", chunks, []))
    with pytest.raises(DetectionError, match="outside"):
        DetectionExample.from_obj(("q", chunks, [3]))
    with pytest.raises(DetectionError, match="neither"):
        DetectionExample.from_obj({"query": "q", "chunks": with_ids, "gold": ["z"]})
    with pytest.raises(DetectionError, match="missing key"):
        DetectionExample.from_obj({"query": "q", "chunks": chunks})
    with pytest.raises(DetectionError, match="chunk 1"):
        DetectionExample.from_obj(("q", ["a", 5], [0]))
    with pytest.raises(DetectionError, match="non-empty"):
        DetectionExample.from_obj(("  ", chunks, [0]))


def test_read_examples_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "ex.jsonl"
    p.write_text(
        json.dumps({"query": "q1", "chunks": ["a", "b"], "gold": [1]}) + "\n\n"
        + json.dumps({"id": "e2", "query": "q2", "chunks": [{"id": "d1", "text": "x"}], "gold": {"d1": 2}}) + "\n",
        encoding="utf-8",
    )
    ex = read_examples(p)
    assert [e.relevance for e in ex] == [(0.0, 1.0), (2.0,)]
    assert ex[1].id == "e2"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "chunks": ["a"], "gold": [0]}\n{oops\n', encoding="utf-8")
    with pytest.raises(DetectionError, match=r"bad.jsonl:2"):
        read_examples(bad)


# ---------------------------------------------------------------- head-set YAML
def test_yaml_round_trip_and_shape_check(tmp_path: Path) -> None:
    head_list, mats, rels = _synthetic((3, 2), layers=6, heads=4)
    hs = rank_heads(mats, rels, heads=head_list, num_layers=6, num_heads=4, model="toy-model").head_set(5, name="toy")
    path = tmp_path / "toy.yaml"
    hs.to_yaml(path)
    back = HeadSet.from_yaml(path)
    assert back == hs
    assert HeadSet.parse(str(path)) == hs
    assert back.resolve(6, 4) == hs.heads
    with pytest.raises(HeadSetError, match="was made for a model with 6 layers x 4 heads"):
        back.resolve(30, 9)


def test_shipped_sets_load_by_name() -> None:
    names = available_head_sets()
    shipped = [n for n in names if n.startswith(("smollm2-135m-instruct-", "qwen2.5-coder-0.5b-instruct-"))]
    assert {"smollm2-135m-instruct-scifact", "smollm2-135m-instruct-hotpotqa", "smollm2-135m-instruct-mix"} <= set(shipped)
    for name in shipped:
        hs = HeadSet.named(name)
        assert hs.heads is not None and len(hs.heads) == 16
        assert hs.metric == "ndcg@10" and hs.source and hs.model
        assert hs.scores is not None and len(hs.scores) == 16
        shape = (30, 9) if name.startswith("smollm2") else (24, 14)
        assert (hs.num_layers, hs.num_heads) == shape
        hs.resolve(*shape)
        with pytest.raises(HeadSetError, match="was made for"):
            hs.resolve(32, 32)
    for budget in (9, 18):  # the depth-budget sets keep to their layers, so their passes stop there
        hs = HeadSet.named(f"smollm2-135m-instruct-mix-l{budget}")
        assert hs.heads is not None and max(layer for layer, _ in hs.heads) < budget
        assert QRScorer(device="cpu", **QRHEAD_SCORING, heads=hs).head_plan().deepest < budget


def test_embedded_model_defaults_to_detected_set() -> None:
    default = default_head_set_for("smollm2-135m-instruct")
    assert default.name == "smollm2-135m-instruct-mix"
    assert default.heads is not None and len(default.heads) == 16
    assert default == HeadSet.named("smollm2-135m-instruct-mix")


# ---------------------------------------------------------------- end to end on a tiny random model
EXAMPLES = [
    ("Which fruit has potassium?", ["Paris is in France.", "Bananas have potassium.", "The sky is blue."], [1]),
    ("Who wrote Hamlet?", [("Plays", "Shakespeare wrote Hamlet."), "Cats purr.", "Rain is wet."], [0]),
    ("Where is Everest?", ["Violins have strings.", "Bees dance.", "Everest is in Nepal."], {2: 2}),
]


def test_detect_heads_end_to_end(tiny_model: str) -> None:
    scorer = QRScorer(tiny_model, device="cpu")
    results = collect_head_scores(scorer, EXAMPLES)
    assert [tuple(r.scores.shape) for r in results] == [(12, 3)] * 3
    examples = [DetectionExample.from_obj(e, i) for i, e in enumerate(EXAMPLES)]
    ranking = rank_head_scores(results, examples, "ndcg@10", num_layers=3, num_heads=4, model="tiny")
    hs = detect_heads(scorer, EXAMPLES, top_k=4)
    assert hs.heads == tuple(h for h, _ in ranking.top(4))
    assert (hs.num_layers, hs.num_heads, hs.metric) == (3, 4, "ndcg@10")
    qr = detect_heads(scorer, EXAMPLES, top_k=2, metric="qrscore")
    assert qr.metric == "qrscore" and qr.heads is not None and len(qr.heads) == 2
    # the detected set scores with the same model
    assert len(QRScorer(tiny_model, device="cpu", heads=hs).score("q?", ["a", "b"])) == 2
    with pytest.raises(HeadSetError, match="was made for"):
        _ = QRScorer(device="cpu", **QRHEAD_SCORING, heads=hs).head_set  # the embedded model has another shape


def test_detect_heads_rejects_bad_input(tiny_model: str) -> None:
    with pytest.raises(DetectionError, match="top_k"):
        detect_heads(tiny_model, EXAMPLES, top_k=0)
    with pytest.raises(DetectionError, match="unknown metric"):
        detect_heads(tiny_model, EXAMPLES, metric="map")
    with pytest.raises(DetectionError, match="no examples"):
        detect_heads(tiny_model, [])
    with pytest.raises(TypeError, match="scorer_or_model"):
        detect_heads(42, EXAMPLES)  # type: ignore[arg-type]


def test_cli_detect(tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "examples.jsonl"
    data.write_text("\n".join(json.dumps({"query": q, "chunks": c, "gold": g}) for q, c, g in EXAMPLES), encoding="utf-8")
    out, png = tmp_path / "heads.yaml", tmp_path / "heads.png"
    code = cli_main(["detect", "--model", tiny_model, "--data", str(data), "--top-k", "3", "--metric", "ndcg@10",
                     "--out", str(out), "--plot", str(png), "--device", "cpu", "--quiet"])
    assert code == 0
    hs = HeadSet.from_yaml(out)
    assert hs.heads is not None and len(hs.heads) == 3 and hs.name == "heads"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out) in capsys.readouterr().out
    assert cli_main(["detect", "--model", tiny_model, "--data", str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 2
    assert cli_main(["detect", "--model", tiny_model, "--data", str(data), "--out", str(out), "--metric", "mrr"]) == 2
    assert cli_main(["detect", "--model", tiny_model, "--data", str(data), "--out", str(out), "--top-k", "0"]) == 2
    assert cli_main(["detect", "--model", tiny_model, "--data", str(data), "--out", str(out), "--top-k", "99"]) == 2
    err = capsys.readouterr().err
    assert "qr-integrations detect: error:" in err and "unknown metric" in err


def test_heatmap_marks_chosen_heads(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    head_list, mats, rels = _synthetic((2, 1), layers=4, heads=3)
    ranking: HeadRanking = rank_heads(mats, rels, heads=head_list, num_layers=4, num_heads=3, model="toy")
    fig = ranking.plot(tmp_path / "h.png", top_k=2)
    assert (tmp_path / "h.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert len(ax.patches) == 2  # the chosen heads are boxed


def test_depth_budget_detection_stops_early_and_keeps_the_order(tiny_model: str) -> None:
    scorer = QRScorer(tiny_model, device="cpu")
    full = collect_head_scores(scorer, EXAMPLES)
    shallow = collect_head_scores(scorer, EXAMPLES, max_layers=2)
    assert [tuple(r.scores.shape) for r in shallow] == [(8, 3)] * 3  # 2 of 3 layers x 4 heads
    assert all(layer < 2 for layer, _ in shallow[0].heads)
    # the heads it did score got the same scores as in the full pass
    for a, b in zip(full, shallow, strict=True):
        rows = [a.heads.index(h) for h in b.heads]
        assert np.allclose(a.scores[rows].numpy(), b.scores.numpy(), atol=1e-6)
    examples = [DetectionExample.from_obj(e, i) for i, e in enumerate(EXAMPLES)]
    ranking = rank_head_scores(full, examples, "ndcg@10", num_layers=3, num_heads=4, model="tiny")
    budget = detect_heads(scorer, EXAMPLES, top_k=3, max_layers=2)
    assert budget.heads == tuple(h for h, _ in ranking.top(12) if h[0] < 2)[:3]
    assert budget.source is not None and "layers 0-1" in budget.source
    assert ranking.head_set(3, max_layers=3).heads == ranking.head_set(3).heads
    with pytest.raises(DetectionError, match="max_layers"):
        detect_heads(scorer, EXAMPLES, max_layers=0)
    with pytest.raises(DetectionError, match="only 4 heads in its first 1 layers"):
        ranking.head_set(5, max_layers=1)


def test_ties_across_the_cut_are_named() -> None:
    heads = [(0, 0), (0, 1), (1, 0), (1, 1)]
    # head (0, 0) ranks the gold second, the other three first: three heads tie at 1.000
    tied = rank_heads([np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])], [[0, 1]], heads=heads)
    message = tied.tie_warning(2)
    assert message is not None and message.startswith("3 heads tie at 1.000 across the cut at the 2nd best, on 1 example")
    assert "2 of them were kept by (layer, head) order" in message
    assert tied.tie_warning(3) is None and tied.tie_warning(4) is None  # every tied head kept
    # three heads that rank the gold first, second and third
    separated = rank_heads([np.array([[0.9, 0.1, 0.0], [0.5, 0.9, 0.0], [0.1, 0.5, 0.9]])], [[1, 0, 0]], heads=heads[:3])
    assert separated.tie_warning(1) is None and separated.tie_warning(2) is None


def test_detect_warns_when_the_examples_cannot_separate_heads(tmp_path: Path, questions, capsys) -> None:
    """Four easy examples on the embedded model: many heads rank the gold first on every one (1.000 each), so the
    16 kept are picked among them by (layer, head) order; the command says so and still writes the set."""
    data = tmp_path / "examples.jsonl"
    data.write_text("\n".join(json.dumps({"query": q, "chunks": c, "gold": [g]}) for q, c, g in questions[:4]))
    out = tmp_path / "heads.yaml"
    code = cli_main(["detect", "--data", str(data), "--out", str(out), "--device", "cpu", "--threads", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and out.exists()
    assert "qr-integrations detect: warning:" in err and "tie at 1.000 across the cut at the 16th best, on 4 examples" in err
    with pytest.warns(UserWarning, match="cannot separate them"):
        detect_heads(QRScorer(device="cpu", **QRHEAD_SCORING, num_threads=1), [(q, c, [g]) for q, c, g in questions[:4]],
                     top_k=16)
