"""Result objects (top_n, records, pandas, str), progress bars that follow show_progress, and num_threads."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from qr_integrations import QRScorer, RankedResults, TrimResult
from qr_integrations.core.config import QRHEAD_SCORING
from qr_integrations.core.results import RankedChunk

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
QUERY = "Which fruit has potassium?"
CHUNKS = ["Paris is in France.", "Bananas are rich in potassium.", "The sky is blue."]
FAST_HEADS = "3-1,2-4,1-7"  # shallow heads: the forward pass stops after layer 3


@pytest.fixture(scope="module")
def ranked() -> RankedResults:
    return RankedResults(QUERY, (RankedChunk(1, 0.9, 1, "Bananas are rich in potassium.", "Fruit"),
                                 RankedChunk(0, 0.25, 2, "Paris is in France."),
                                 RankedChunk(2, -0.125, 3, "The sky is blue.")))


def test_top_n_and_the_deprecated_top_k(ranked: RankedResults) -> None:
    assert [c.index for c in ranked.top_n(2)] == [1, 0]
    assert ranked.top_n(0) == [] and len(ranked.top_n(10)) == 3
    with pytest.raises(ValueError, match="non-negative integer"):
        ranked.top_n(-1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ranked.top_k(1) == ranked.top_n(1)
    assert [w.category for w in caught] == [DeprecationWarning] and "use top_n" in str(caught[0].message)


def test_records_and_pandas(ranked: RankedResults, monkeypatch: pytest.MonkeyPatch) -> None:
    records = ranked.to_records()
    assert records[0] == {"rank": 1, "index": 1, "score": 0.9, "text": "Bananas are rich in potassium.", "title": "Fruit"}
    assert records[1]["title"] is None and [r["rank"] for r in records] == [1, 2, 3]
    pd = pytest.importorskip("pandas")
    frame = ranked.to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["rank", "index", "score", "text", "title"]
    assert frame["index"].tolist() == [1, 0, 2] and frame["score"].tolist() == [0.9, 0.25, -0.125]
    assert list(RankedResults("q", ()).to_pandas().columns) == ["rank", "index", "score", "text", "title"]
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(ImportError, match="pip install pandas"):
        ranked.to_pandas()


def test_str_is_readable(ranked: RankedResults) -> None:
    text = str(ranked)
    lines = text.splitlines()
    assert lines[0] == f"Query: {QUERY}"
    assert lines[1] == "  1. [#1]  +0.9000  Fruit: Bananas are rich in potassium."
    assert lines[3] == "  3. [#2]  -0.1250  The sky is blue."
    assert "RankedChunk(" not in text
    assert str(RankedResults("q", ())) == "Query: q\n  (no chunks)"
    long = RankedResults("q", (RankedChunk(0, 1.0, 1, "word " * 100),))
    assert len(str(long).splitlines()[1]) < 130 and str(long).endswith("…")


def test_trim_result_to_dict() -> None:
    trimmed = TrimResult(QUERY, ("b",), (1,), (0.5,), (3,), "b", 2, 5, (0.1, 0.5), ("a", "b"))
    data = trimmed.to_dict()
    assert data["chunks"] == [{"index": 1, "score": 0.5, "tokens": 3, "text": "b"}]
    assert (data["kept_tokens"], data["input_tokens"], data["all_scores"]) == (3, 5, [0.1, 0.5])


def test_progress_shows_for_one_window(scorer: QRScorer, capsys: pytest.CaptureFixture[str]) -> None:
    _ = scorer.loaded  # the shared model, loaded before: this test is about the scoring bar
    quiet = QRScorer(device="cpu", **QRHEAD_SCORING, heads=FAST_HEADS)
    quiet.score(QUERY, CHUNKS)
    assert capsys.readouterr().err == ""
    shown = QRScorer(device="cpu", **QRHEAD_SCORING, heads=FAST_HEADS, show_progress=True)
    shown.score(QUERY, CHUNKS)
    err = capsys.readouterr().err
    assert "scoring 1 window" in err and "tok" in err


LOADS = """
import sys
from qr_integrations import QRScorer, clear_model_cache
from qr_integrations.core.config import QRHEAD_SCORING
for show in (False, True, False):
    clear_model_cache()
    QRScorer(device="cpu", **QRHEAD_SCORING, heads="3-1", show_progress=show).count_tokens("x")
    print(f"=== loaded with show_progress={show}", file=sys.stderr, flush=True)
"""


def test_the_loading_bar_follows_show_progress() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", LOADS], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    parts = done.stderr.split("=== loaded with show_progress=")
    assert len(parts) == 4
    assert "Loading weights" not in parts[0]  # first load, show_progress=False
    assert "Loading weights" in parts[1]  # show_progress=True
    assert "Loading weights" not in parts[2]  # the setting is restored after each load


def test_num_threads_applies_while_the_scorer_runs(scorer: QRScorer) -> None:
    seen: list[int] = []
    hook = scorer.loaded.layers[0].register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        QRScorer(device="cpu", **QRHEAD_SCORING, heads=FAST_HEADS, num_threads=1).score(QUERY, CHUNKS)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2  # restored after the call
        seen.clear()
        # None: torch's setting is left alone
        QRScorer(device="cpu", **QRHEAD_SCORING, heads=FAST_HEADS).score(QUERY, CHUNKS)
        assert seen and set(seen) == {2}
    finally:
        hook.remove()
        torch.set_num_threads(before)
