"""``qr-integrations rank-file`` in process: JSONL and Parquet rows, scores equal to QRScorer's, resuming a run
that stopped (a torn last line included), and errors that name the row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from qr_integrations import QRScorer
from qr_integrations.cli import main
from qr_integrations.core.config import config_for_ranked_input
from qr_integrations.rankfile import rank_file, ranking_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FLAGS = ["--device", "cpu", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    from tests.conftest import QUESTIONS

    out: list[dict[str, Any]] = [
        {"id": f"q{i}", "query": q, "chunks": c, "gold": g} for i, (q, c, g) in enumerate(QUESTIONS)
    ]
    out.append({"id": "titled", "query": "Which fruit has potassium?",
                "chunks": [{"text": "Bananas have potassium.", "title": "Fruit"}, {"text": "Paris.", "title": None}],
                "gold": 0})
    return out


@pytest.fixture(scope="module")
def reference() -> QRScorer:
    """What rank-file runs: the ranked-input settings (candidates come best first), one thread."""
    return QRScorer(config=config_for_ranked_input({"device": "cpu", "num_threads": 1}))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_jsonl_rows_get_scores_and_ranking(tmp_path: Path, rows: list[dict[str, Any]], reference: QRScorer) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    assert main(["rank-file", str(src), str(tmp_path / "out.jsonl"), "--top-n", "2", *FLAGS]) == 0
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    for row, got in zip(rows, out, strict=True):
        want = reference.score(row["query"], row["chunks"])
        assert got["scores"] == pytest.approx(want, rel=1e-9)
        assert got["ranking"] == ranking_of(want, 2)
        assert got["ranking"][0] == row["gold"]
        assert got["chunks"] == row["chunks"] and got["gold"] == row["gold"]  # other fields pass through


def test_resumes_after_a_stop(tmp_path: Path, rows: list[dict[str, Any]], reference: QRScorer) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    dst = tmp_path / "out.jsonl"
    full = rank_file(src, dst, reference, show_progress=False)
    assert (full.scored, full.resumed) == (len(rows), 0)
    lines = dst.read_text().splitlines(keepends=True)
    dst.write_text("".join(lines[:2]) + lines[2][:25])  # a run killed while writing its third row
    again = rank_file(src, dst, reference, show_progress=False)
    assert (again.scored, again.resumed) == (len(rows) - 2, 2)
    assert dst.read_text() == "".join(lines)
    done = rank_file(src, dst, reference, show_progress=False)
    assert (done.scored, done.resumed) == (0, len(rows))


def test_resume_refuses_another_inputs_output(tmp_path: Path, rows: list[dict[str, Any]], reference: QRScorer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "out.jsonl"
    rank_file(write_jsonl(tmp_path / "a.jsonl", rows[:2]), dst, reference, show_progress=False)
    other = write_jsonl(tmp_path / "b.jsonl", [dict(r, id=f"other{i}") for i, r in enumerate(rows)])
    assert main(["rank-file", str(other), str(dst), *FLAGS]) == 2
    assert "another input" in capsys.readouterr().err
    assert main(["rank-file", str(other), str(dst), "--overwrite", *FLAGS]) == 0
    assert [r["id"] for r in read_jsonl(dst)] == [f"other{i}" for i in range(len(rows))]


def test_parquet_in_and_out(tmp_path: Path, rows: list[dict[str, Any]], reference: QRScorer) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = [r for r in rows if r["id"] != "titled"]
    pq.write_table(pa.Table.from_pylist(plain), tmp_path / "in.parquet")
    assert main(["rank-file", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), *FLAGS]) == 0
    out = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert not (tmp_path / "out.parquet.partial.jsonl").exists()
    for row, got in zip(plain, out, strict=True):
        assert got["scores"] == pytest.approx(reference.score(row["query"], row["chunks"]), rel=1e-9)
    assert main(["rank-file", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), *FLAGS]) == 2


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"query": "q", "chunks": ["a"]}\n{"query": "", "chunks": ["a"]}\n', "in.jsonl:2: 'query'"),
        ('{"query": "q", "chunks": "one string"}\n', "'chunks' must be a list"),
        ('{"query": "q", "chunks": ["a"]}\nnot json\n', "in.jsonl:2: not valid JSON"),
    ],
)
def test_bad_rows_name_their_line(tmp_path: Path, content: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in.jsonl").write_text(content)
    assert main(["rank-file", str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"), *FLAGS]) == 2
    assert says in capsys.readouterr().err


def test_unknown_file_types_and_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rank-file", str(tmp_path / "in.csv"), str(tmp_path / "out.jsonl"), *FLAGS]) == 2
    assert "use .jsonl or .parquet" in capsys.readouterr().err
    assert main(["rank-file", str(tmp_path / "missing.jsonl"), str(tmp_path / "out.jsonl"), *FLAGS]) == 2
    assert "does not exist" in capsys.readouterr().err


def rank_file_process(src: Path, dst: Path, *flags: str) -> subprocess.Popen[str]:
    """``qr-integrations rank-file`` as its own process, stderr a pipe (not a terminal, as in a log file)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "qr_integrations.cli", "rank-file", str(src), str(dst), "--device",
                             "cpu", "--threads", "1", *flags], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_ctrl_c_prints_one_line_and_a_rerun_resumes(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    many = [dict(r, id=f"{r['id']}-{k}") for k in range(40) for r in rows]
    src, dst = write_jsonl(tmp_path / "in.jsonl", many), tmp_path / "out.jsonl"
    proc = rank_file_process(src, dst, "--quiet")
    deadline = time.monotonic() + 240
    while not (dst.exists() and dst.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    done = len(read_jsonl(dst))
    assert proc.returncode == 130 and 2 <= done < len(many)
    assert err.strip().splitlines() == [f"interrupted after {done} rows; run the same command again to resume"]
    assert "Traceback" not in err


def test_one_bar_without_cursor_escapes_when_stderr_is_no_terminal(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    # distinct chunks (copies are read once) long enough for several windows a row: the scorer's own bar would
    # nest under the row bar
    chunks = [f"Part {k}: " + " ".join(["filler text"] * 60) for k in range(3)]
    long_rows = [{"id": i, "query": "Which fruit has potassium?", "chunks": chunks}
                 for i in range(2)]
    src = write_jsonl(tmp_path / "in.jsonl", long_rows)
    proc = rank_file_process(src, tmp_path / "out.jsonl", "--max-context-tokens", "256")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert "\x1b[A" not in err  # what nested bars write to move the cursor up
    assert "rank-file" in err and "2/2" in err  # the row bar is kept
    assert "scoring" not in err  # no per-row window bar
