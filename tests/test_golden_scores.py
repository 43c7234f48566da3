"""Scores over a fixed set of inputs stay bit-identical across refactors of the scoring pipeline.

``tests/data/golden_scores.json`` holds every float of :func:`golden_cases` as written by the code of a
known-good commit, with the platform it was written on. On that platform (torch version and CPU
capability) the test demands exact equality: a refactor that reorders a floating-point operation fails it.
Elsewhere the last digits of a float32 matmul may differ, so it compares to 1e-6 of the largest score.

After a change that is meant to move scores (a new default, a different aggregation), regenerate the file
and say why in the commit::

    OMP_NUM_THREADS=1 .venv/bin/python tests/test_golden_scores.py --write
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from qr_integrations import QRScorer
from qr_integrations.core.config import QRHEAD_SCORING

GOLDEN = Path(__file__).parent / "data" / "golden_scores.json"

QUERY = "Which planet has a prominent ring system?"
CHUNKS = [
    "Mars is the fourth planet from the Sun and is often called the Red Planet.",
    "Bananas are an excellent source of potassium and vitamin B6.",
    ("Saturn", "Saturn is the sixth planet from the Sun and has a prominent ring system."),
    {"title": "Violin", "text": "The violin is a string instrument played with a bow."},
    "Jupiter is the largest planet in the Solar System; it has faint rings.",
    "Honey bees communicate the location of flowers with a waggle dance.",
    "The Great Wall of China stretches thousands of kilometres across northern China.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
]
LONG_QUERY = " ".join(["Which planet, among all the planets that orbit our Sun in the Solar System,"] * 8) + " has rings?"
DOC = "\n\n".join(c if isinstance(c, str) else (c[1] if isinstance(c, tuple) else c["text"]) for c in CHUNKS)


def golden_cases() -> dict[str, Any]:
    """Every score the guard pins, by case name (lists of floats, or lists of such lists)."""
    own = QRScorer(device="cpu", **QRHEAD_SCORING)
    default = QRScorer(device="cpu")
    out: dict[str, Any] = {
        "qrhead/input": own.score(QUERY, CHUNKS, layout="input"),
        "qrhead/reversed": own.score(QUERY, CHUNKS, layout="reversed"),
        "qrhead/both": own.score(QUERY, CHUNKS, layout="both"),
        "qrhead/long_query": own.score(LONG_QUERY, CHUNKS),
        "qrhead/uncalibrated": QRScorer(device="cpu", calibrate=False, **{**QRHEAD_SCORING}).score(QUERY, CHUNKS),
        "defaults/score": default.score(QUERY, CHUNKS),
        "defaults/trim": default.trim(QUERY, DOC, top_n=3).all_scores,
        "head_sets": own.score_head_sets(QUERY, CHUNKS, ["all", "3-1,12-4"]),
    }
    for strategy in ("overlap", "tournament"):
        small = QRScorer(device="cpu", max_context_tokens=160, cross_window=strategy, **QRHEAD_SCORING)
        out[f"windows/{strategy}"] = small.score(QUERY, CHUNKS)
    small_default = QRScorer(device="cpu", max_context_tokens=160)
    out["windows/defaults"] = small_default.score(QUERY, CHUNKS)
    # the default two-stage path (the dense prior's best chunks, then QRHead), with a shortlist this input exceeds
    out["windows/shortlist"] = QRScorer(device="cpu", max_context_tokens=160, shortlist=4).score(QUERY, CHUNKS)
    cached = QRScorer(device="cpu", prefix_cache_mb=64, **QRHEAD_SCORING)
    out["prefix_cache/first"] = cached.score(QUERY, CHUNKS)
    out["prefix_cache/second"] = cached.score(QUERY, CHUNKS)
    questions = [QUERY, "Which fruit has potassium?", "How do bees find flowers?"]
    for name, s in (("qrhead", own), ("windows", small_default)):
        with s.context(CHUNKS) as ctx:
            out[f"context/{name}"] = [ctx.score(q) for q in questions]
    out["batch/defaults"] = default.score_batch([*questions, QUERY], [*([CHUNKS] * 3), CHUNKS[:4]])
    return out


def _platform() -> dict[str, str]:
    return {"torch": torch.__version__.split("+")[0], "cpu": str(torch.backends.cpu.get_cpu_capability())}


def _flatten(value: Any) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)]
    return [x for v in value for x in _flatten(v)]


def _to_hex(value: Any) -> Any:
    return float(value).hex() if isinstance(value, (int, float)) else [_to_hex(v) for v in value]


def _from_hex(value: Any) -> Any:
    return float.fromhex(value) if isinstance(value, str) else [_from_hex(v) for v in value]


@pytest.mark.usefixtures("one_torch_thread")
def test_scores_are_unchanged_on_fixed_inputs() -> None:
    record = json.loads(GOLDEN.read_text())
    expected = {k: _from_hex(v) for k, v in record["cases"].items()}
    got = golden_cases()
    assert sorted(got) == sorted(expected)
    exact = record["platform"] == _platform()
    for name, want in expected.items():
        have = got[name]
        assert all(type(x) is float for x in _flatten(have)), name  # plain Python floats
        assert len(_flatten(have)) == len(_flatten(want)), name
        if exact:
            assert _flatten(have) == _flatten(want), f"{name}: scores changed on the platform the golden file was written on"
        else:
            scale = max(1e-12, max((abs(x) for x in _flatten(want)), default=0.0))
            diffs = [abs(a - b) for a, b in zip(_flatten(have), _flatten(want), strict=True)]
            assert max(diffs, default=0.0) <= 1e-6 * scale, f"{name}: {max(diffs)} apart"
            assert all(math.isfinite(x) for x in _flatten(have))


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: OMP_NUM_THREADS=1 python tests/test_golden_scores.py --write")
    torch.set_num_threads(1)
    GOLDEN.parent.mkdir(exist_ok=True)
    cases = {k: _to_hex(v) for k, v in golden_cases().items()}
    GOLDEN.write_text(json.dumps({"platform": _platform(), "cases": cases}, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {GOLDEN}")
