"""The experiment registry and its entry point: list, per-experiment help, name errors, steps, one tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import experiments  # noqa: F401 - registers them
from benchmarks import harness as H
from benchmarks import methods as M
from benchmarks.__main__ import main

NAMES = sorted(H.EXPERIMENTS)


def test_list_names_every_experiment_under_its_topic(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(NAMES) >= 25
    for name, exp in H.EXPERIMENTS.items():
        row = next(i for i, line in enumerate(lines) if line.startswith("  ") and line.split()[0] == name)
        heading = max(i for i, line in enumerate(lines[:row]) if not line.startswith(" "))
        assert lines[heading] == f"{exp.topic}:" and exp.description in lines[row]
    assert main(["list", "--topic", "heads"]) == 0
    assert capsys.readouterr().out.split()[1:] == ["detect-heads", *H.EXPERIMENTS["detect-heads"].description.split(),
                                                   "layout-heads", *H.EXPERIMENTS["layout-heads"].description.split()]


@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_help_parses(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    exp = H.EXPERIMENTS[name]
    with pytest.raises(SystemExit) as exc:
        main(["run", name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{name} ({exp.topic}): {exp.description}")
    assert f"usage: python -m benchmarks run {name}" in out
    for option in exp.owned_options():  # what the experiment fixes, or a --step stands for, is not offered
        assert f"  {option} " not in out and f"[{option} " not in out and f"[{option}]" not in out


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(SystemExit, match="did you mean position-hotpot"):
        main(["run", "positon-hotpot"])
    with pytest.raises(SystemExit, match="'python -m benchmarks list' names them all"):
        main(["run", "zzz"])
    with pytest.raises(SystemExit, match="unknown topic"):
        main(["list", "--topic", "nope"])


def test_declarations_name_real_data_methods_and_runners() -> None:
    for exp in H.EXPERIMENTS.values():
        assert exp.topic in H.TOPICS and exp.result and exp.metrics
        assert callable(H.resolve_callable(exp.run)), exp.name
        for d in exp.data:
            assert callable(H.DATASETS[d].load()), (exp.name, d)
        for m in exp.methods:
            assert m in M.METHODS, (exp.name, m)
    used = {m for e in H.EXPERIMENTS.values() for m in e.methods}
    for m in used:
        assert callable(H.resolve_callable(M.METHODS[m].impl)), m
    with pytest.raises(ValueError, match="topic"):
        H.Experiment(name="x", topic="misc", description="", data=(), methods=(), metrics=(), result="x", run="a:b")


def test_steps_and_fixed_options_become_the_runner_arguments() -> None:
    depth = H.EXPERIMENTS["depth-budget"]
    assert H.experiment_argv(depth, ["--step", "report", "--ship"]) == (["--stage", "report", "--ship"],
                                                                       ["--step", "report", "--ship"])
    with pytest.raises(SystemExit, match="needs --step"):
        H.experiment_argv(depth, ["--ship"])
    with pytest.raises(SystemExit, match="sets --stage itself"):
        H.experiment_argv(depth, ["--step", "time", "--stage", "report"])
    with pytest.raises(SystemExit, match="unknown step"):
        H.experiment_argv(depth, ["--step=plot"])
    order = H.EXPERIMENTS["retriever-order-scifact"]  # the first step is the default and is not recorded
    assert H.experiment_argv(order, ["--limit", "3"]) == (["--dataset", "scifact", "--limit", "3"], ["--limit", "3"])
    assert H.experiment_argv(order, ["--step=report"])[0] == ["--dataset", "scifact", "--report"]
    with pytest.raises(SystemExit, match="sets --dataset itself"):
        H.experiment_argv(order, ["--dataset=hotpotqa"])
    with pytest.raises(SystemExit, match="has no steps"):
        H.experiment_argv(H.EXPERIMENTS["niah"], ["--step", "report"])


def test_records_name_the_experiment_command(tmp_path: Path) -> None:
    with H.running(H.EXPERIMENTS["position-hotpot"], ["--split", "test", "--limit", "20"]):
        jpath, mpath = H.write_results("demo", {"x": 1}, "| a |\n|---|", tmp_path)
    cmd = ".venv/bin/python -m benchmarks run position-hotpot --split test --limit 20"
    assert json.loads(jpath.read_text())["command"] == cmd
    assert mpath.read_text().endswith(f"Command: `{cmd}`\n")
    assert H.command_line() != cmd  # outside a run: the process's own command line


def test_tiny_position_run_writes_a_record_and_rereports_from_its_cache(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """position-identical end to end on two in-memory items (no data files): captures, derived corrections,
    BM25 and dense, paired tests, the plot and the record; a second run reads the captures back."""
    from benchmarks import position_bias as P
    from qr_integrations import QRScorer

    facts = ["Bananas are rich in potassium.", "Paris is the capital of France.", "Cats purr when content.",
             "Saturn has rings.", "Copper conducts electricity.", "Bees dance to show where flowers are."]

    def items(data_dir: Path, split: str) -> list[dict]:
        assert split == "dev"
        out = []
        for i, (query, gold) in enumerate([("Which fruit has potassium?", 0), ("What is the capital of France?", 1)]):
            others = [f for j, f in enumerate(facts) if j != gold][:3]
            chunks = [("", facts[gold])] * 2 + [("", o) for o in others]
            order = [2, 0, 3, 1, 4] if i else [3, 0, 4, 1, 2]
            out.append({"qid": f"s{i}", "query": query, "chunks": [chunks[k] for k in order],
                        "gold": [int(k < 2) for k in order]})
        return out

    monkeypatch.setitem(P.DATASETS, "identical", items)
    monkeypatch.setattr(H, "REPO_ROOT", tmp_path)  # plots are recorded relative to it
    monkeypatch.setattr(H, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(H, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(H, "IMG_DIR", tmp_path / "img")
    args = ["--threads", "1", "--no-progress", "--data-dir", str(tmp_path / "no-data")]
    assert main(["run", "position-identical", *args]) == 0
    rec = json.loads((tmp_path / "results" / "position_identical_all_smollm2.json").read_text())
    assert rec["command"] == ".venv/bin/python -m benchmarks run position-identical " + " ".join(args)
    assert rec["n"] == 2 and rec["dataset"] == "identical"
    assert {"BM25", "dense", "divide K=2 +bm25@0.7", "subtract K=1"} <= set(rec["results"])
    assert all(0.0 <= r["recall@2"] <= 1.0 for r in rec["results"].values())
    assert (tmp_path / "img" / "position_identical_all_smollm2.png").is_file()
    captures = sorted((tmp_path / "cache" / "position" / "smollm2").glob("*.pt"))
    assert len(captures) == 2
    table = (tmp_path / "results" / "position_identical_all_smollm2.md").read_text()

    def no_capture(self: QRScorer, *a: object, **k: object) -> None:
        raise AssertionError("a cached capture was computed again")

    monkeypatch.setattr(QRScorer, "head_attention", no_capture)
    assert main(["run", "position-identical", *args]) == 0
    assert (tmp_path / "results" / "position_identical_all_smollm2.md").read_text() == table


def test_shipped_position_run_shares_scores_between_settings_that_read_alike(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``--shipped --also``: the defaults and a variant are scored, tested and recorded side by side; where the
    variant reads an input exactly as the defaults do (``shortlist=None`` on inputs of one window), its scores
    are the cached ones, and ``--cached-only`` scores nothing."""
    from benchmarks import position_bias as P
    from qr_integrations import QRScorer

    facts = ["Bananas are rich in potassium.", "Paris is the capital of France.", "Cats purr when content.",
             "Saturn has rings.", "Copper conducts electricity."]

    def items(data_dir: Path, split: str) -> list[dict]:
        return [{"qid": f"s{g}", "query": q, "chunks": [("", f) for f in facts], "gold": [int(i == g) for i in range(5)]}
                for q, g in (("Which fruit has potassium?", 0), ("Which planet has rings?", 3),
                             ("What conducts electricity?", 4))]

    monkeypatch.setitem(P.DATASETS, "identical", items)
    monkeypatch.setattr(H, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(H, "RESULTS_DIR", tmp_path / "results")
    calls: list[int] = []
    score = QRScorer.score

    def counted(self: QRScorer, *a: object, **k: object) -> list[float]:
        calls.append(1)
        return score(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(QRScorer, "score", counted)
    args = ["--threads", "1", "--no-progress", "--data-dir", str(tmp_path), "--shipped", "--also", "shortlist=None",
            "--out", "shipped_demo"]
    assert main(["run", "position-identical", *args]) == 0
    assert len(calls) == 3  # three items; the variant reads them all as the defaults do
    rec = json.loads((tmp_path / "results" / "shipped_demo.json").read_text())
    assert rec["n"] == 3 and rec["results"][P.SHIPPED] == rec["results"]["QRScorer(shortlist=None)"]
    assert set(rec["tests"]) == {"QRScorer(shortlist=None)", "BM25", "dense"}
    # per-query values are recorded, so that a later run over more queries can be pooled with this one
    for method, per in rec["per_query"].items():
        assert set(per) == {"s0", "s3", "s4"} and sum(per.values()) / 3 == pytest.approx(rec["results"][method]["recall@5"])
    lines = (tmp_path / "cache" / "position" / "smollm2" / "shipped_identical.jsonl").read_text().splitlines()
    assert [json.loads(x)["key"].endswith(":whole") for x in lines] == [True, True, True]
    assert main(["run", "position-identical", *args, "--cached-only"]) == 0 and len(calls) == 3
    assert main(["run", "position-identical", *args, "--windows", "one"]) == 0 and len(calls) == 3  # all fit one
    assert main(["run", "position-identical", *args, "--start", "1"]) == 0 and len(calls) == 3  # cached
    later = json.loads((tmp_path / "results" / "shipped_demo.json").read_text())
    assert later["n"] == 2 and later["start"] == 1 and set(later["per_query"]["BM25"]) == {"s3", "s4"}
    with pytest.raises(SystemExit, match="past the dev split's last item"):
        main(["run", "position-identical", *args, "--start", "3"])
    with pytest.raises(SystemExit):
        main(["run", "position-identical", *args, "--start", "-1"])
    with pytest.raises(SystemExit, match="--windows several"):
        main(["run", "position-identical", *args, "--windows", "several"])
    assert P.parse_settings("shortlist=None,prior_weight=0.7") == {"shortlist": None, "prior_weight": 0.7}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        P.parse_settings("shortlist")
