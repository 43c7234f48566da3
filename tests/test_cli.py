"""The command line: JSONL, JSON and text from files and stdin, --format, ids echoed, trim --json, --version,
empty input, and detect with --config (on a tiny random model: these tests are about input and output)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qr_integrations import __version__
from qr_integrations.cli import main, read_input

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUERY = "Which fruit has potassium?"
ITEMS: list[Any] = [
    {"id": "doc-a", "text": "Paris is in France."},
    {"id": 7, "text": "Bananas have potassium.", "title": "Fruit"},
    "The sky is blue.",
]


def run(argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    jsonl = tmp_path / "chunks.jsonl"
    jsonl.write_text("\n".join(json.dumps(x) for x in ITEMS) + "\n")
    array = tmp_path / "chunks.json"
    array.write_text(json.dumps(ITEMS, indent=2))
    text = tmp_path / "chunks.txt"
    text.write_text("Paris is in France.\n\nBananas have potassium.\n\nThe sky is blue.\n")
    return {"jsonl": jsonl, "json": array, "text": text}


def test_formats_are_read_right(files: dict[str, Path], tmp_path: Path) -> None:
    for kind in ("jsonl", "json"):
        got = read_input(str(files[kind]))
        assert got.format == kind and got.ids == ["doc-a", 7, None]
        assert got.chunks == [{"text": "Paris is in France.", "title": None},
                              {"text": "Bananas have potassium.", "title": "Fruit"}, "The sky is blue."]
    assert read_input(str(files["text"])).text is not None
    odd = tmp_path / "chunks.data"  # no telling extension: sniffed
    odd.write_text(files["jsonl"].read_text())
    assert read_input(str(odd)).format == "jsonl"
    odd.write_text(files["json"].read_text())
    assert read_input(str(odd)).format == "json"
    odd.write_text(files["text"].read_text())
    assert read_input(str(odd)).format == "text"
    forced = read_input(str(files["jsonl"]), "text")
    assert forced.format == "text" and forced.text is not None and '"doc-a"' in forced.text


def test_rank_reads_jsonl_from_stdin(tiny_model: str, files: dict[str, Path], capsys, monkeypatch) -> None:
    head = "\n".join(files["jsonl"].read_text().splitlines()[:2])  # like `head -2 chunks.jsonl | ...`
    code, out, _ = run(["rank", "-q", QUERY, "-c", "-", "--model", tiny_model, "--quiet"], capsys, head, monkeypatch)
    assert code == 0
    got = rows(out)
    assert len(got) == 2  # two chunks, not one chunk of raw JSON lines
    assert {r["text"] for r in got} == {"Paris is in France.", "Bananas have potassium."}
    assert {r["id"] for r in got} == {"doc-a", 7}
    assert next(r for r in got if r["id"] == 7)["title"] == "Fruit"


@pytest.mark.parametrize("kind", ["jsonl", "json", "text"])
def test_rank_reads_each_format_from_files_and_stdin(kind: str, tiny_model: str, files: dict[str, Path], capsys,
                                                     monkeypatch) -> None:
    base = ["rank", "-q", QUERY, "--model", tiny_model, "--quiet"]
    code, out, _ = run([*base, "-c", str(files[kind])], capsys)
    assert code == 0
    from_file = rows(out)
    assert sorted(r["index"] for r in from_file) == [0, 1, 2]
    code, out, _ = run([*base, "-c", "-"], capsys, files[kind].read_text(), monkeypatch)
    assert code == 0 and rows(out) == from_file
    code, out, _ = run([*base, "-c", "-", "--format", kind], capsys, files[kind].read_text(), monkeypatch)
    assert code == 0 and rows(out) == from_file
    assert ("id" in from_file[0]) == (kind != "text")


def test_format_forces_a_reading(tiny_model: str, files: dict[str, Path], capsys) -> None:
    base = ["rank", "-q", QUERY, "--model", tiny_model, "--quiet", "-c", str(files["jsonl"])]
    code, out, _ = run([*base, "--format", "text"], capsys)
    assert code == 0 and len(rows(out)) == 1  # the whole file is one paragraph of raw JSON when forced
    code, _, err = run([*base[:-2], "-c", str(files["text"]), "--format", "jsonl"], capsys)
    assert code == 2 and "chunks.txt:1: not valid JSON" in err


def test_bad_and_empty_input_exit_2(tiny_model: str, tmp_path: Path, capsys, monkeypatch) -> None:
    base = ["rank", "-q", QUERY, "--model", tiny_model, "--quiet", "-c"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    code, out, err = run([*base, str(empty)], capsys)
    assert code == 2 and out == "" and "empty.jsonl is empty: nothing to score" in err
    code, _, err = run([*base, "-"], capsys, "", monkeypatch)
    assert code == 2 and "stdin is empty" in err
    (tmp_path / "none.json").write_text("[]")
    code, _, err = run([*base, str(tmp_path / "none.json")], capsys)
    assert code == 2 and "holds no chunks" in err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a"}\n{"text": \n')
    code, _, err = run([*base, str(broken)], capsys)
    assert code == 2 and "broken.jsonl:2: not valid JSON" in err
    code, _, err = run([*base, "-"], capsys, '{"text": "a"}\nnot json\n', monkeypatch)
    assert code == 2 and "stdin:2" in err and "--format text" in err
    code, _, err = run([*base, "-"], capsys, '[{"title": "no text"}]', monkeypatch)
    assert code == 2 and 'item 0: expected a JSON string or an object with a "text" string' in err


def test_trim_json_output(tiny_model: str, files: dict[str, Path], tmp_path: Path, capsys) -> None:
    code, out, err = run(["trim", "-q", QUERY, "-t", str(files["jsonl"]), "--top-n", "2", "--json", "--model", tiny_model,
                          "--quiet"], capsys)
    assert code == 0 and "kept 2 of 3 chunks" in err
    result = json.loads(out)
    assert result["query"] == QUERY and result["num_input_chunks"] == 3 and len(result["all_scores"]) == 3
    assert len(result["chunks"]) == 2 and {"index", "score", "tokens", "text", "id"} <= set(result["chunks"][0])
    assert result["text"] == "\n\n".join(c["text"] for c in result["chunks"])
    long_text = tmp_path / "report.txt"
    long_text.write_text("Bananas have potassium.\n\nParis is in France.\n\nThe sky is blue.")
    code, out, _ = run(["trim", "-q", QUERY, "-t", str(long_text), "--top-n", "1", "--json", "--model", tiny_model,
                        "--quiet"], capsys)
    assert code == 0 and json.loads(out)["num_input_chunks"] == 3 and "id" not in json.loads(out)["chunks"][0]
    code, out, _ = run(["trim", "-q", QUERY, "-t", str(long_text), "--top-n", "1", "--model", tiny_model, "--quiet"],
                       capsys)
    assert code == 0 and not out.startswith("{")  # plain text without --json


def test_version() -> None:
    done = subprocess.run([sys.executable, "-m", "qr_integrations.cli", "--version"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == f"qr-integrations {__version__}"


def test_detect_takes_the_shared_model_flags_and_config(tiny_model: str, tmp_path: Path, capsys) -> None:
    data = tmp_path / "examples.jsonl"
    examples = [("Which fruit has potassium?", ["Paris is in France.", "Bananas have potassium."], [1]),
                ("Who wrote Hamlet?", ["Shakespeare wrote Hamlet.", "Cats purr."], [0])]
    data.write_text("\n".join(json.dumps({"query": q, "chunks": c, "gold": g}) for q, c, g in examples))
    config = tmp_path / "reranker.yaml"  # an adapter's file: its own keys are skipped, heads are overridden
    config.write_text(f"model: {tiny_model}\ndevice: cpu\nheads: 0-1\ntop_n: 3\nmax_context_tokens: 512\n")
    out = tmp_path / "heads.yaml"
    code, stdout, err = run(["detect", "--config", str(config), "--data", str(data), "--top-k", "2", "--out", str(out),
                             "--threads", "1", "--quiet"], capsys)
    assert code == 0, err
    assert str(out) in stdout and "12 heads ranked" in err  # all 3 x 4 heads of the tiny model, not the config's one
    code, _, err = run(["detect", "--config", str(tmp_path / "missing.yaml"), "--data", str(data), "--out", str(out)],
                       capsys)
    assert code == 2 and "does not exist" in err
    code, _, err = run(["detect", "--model", "/nope/model", "--data", str(data), "--out", str(out)], capsys)
    assert code == 2 and "model path '/nope/model' does not exist" in err


def test_a_mistyped_flag_shows_the_subcommand_usage_and_a_hint(files: dict[str, Path], capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["rank", "-q", QUERY, "-c", str(files["jsonl"]), "--topn", "3"])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.startswith("usage: qr-integrations rank ")  # the subcommand's usage, not the top level's
    assert "unrecognized arguments: --topn 3 (did you mean --top-n?)" in err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["rank", "-q", QUERY, "-c", "chunks.jsonl", "--threads", "0"], "--threads must be a positive integer, got 0"),
        (["rank", "-q", QUERY, "-c", "chunks.jsonl", "--top-n", "0"], "--top-n must be a positive integer, got 0"),
        (["trim", "-q", QUERY, "-t", "chunks.jsonl", "--max-tokens", "0"], "--max-tokens must be"),
        (["trim", "-q", QUERY, "-t", "chunks.jsonl", "--max-context-tokens", "64"], "--max-context-tokens must be"),
        (["serve", "--max-documents", "0"], "--max-documents must be a positive integer"),
        (["serve", "--max-body-mb", "0"], "--max-body-mb must be a positive integer"),
        (["rank-file", "in.jsonl", "out.jsonl", "--actors", "0"], "--actors must be a positive integer"),
    ],
)
def test_messages_name_the_flag_not_the_config_key(argv: list[str], flag: str, files: dict[str, Path], capsys) -> None:
    argv = [str(files["jsonl"]) if a == "chunks.jsonl" else a for a in argv]
    code, _, err = run(argv, capsys)
    assert code == 2 and flag in err
    for config_speak in ("num_threads", "top_n", "max_tokens", "max_context_tokens", "max_documents", "None", "null",
                         "config key"):
        assert config_speak not in err


def test_layout_help_says_the_real_default(capsys) -> None:
    from qr_integrations import ScorerConfig

    for command, default in (("serve", "reversed"), ("rank-file", "reversed"), ("rank", ScorerConfig().layout),
                             ("trim", ScorerConfig().layout)):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert f"default: the config's, else {default}" in text, command
        assert "else input" not in text or default == "input"
