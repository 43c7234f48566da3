"""The README's "API in brief" runs as pasted, and its score comment is what it prints."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def api_in_brief() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## The API in brief", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_api_in_brief_runs_as_pasted_and_prints_what_it_says() -> None:
    code = api_in_brief()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (The API in brief)", "exec"), {"__name__": "__readme__"})
    printed = out.getvalue().splitlines()
    # the first print is the scores; its comment shows them
    score_line = next(line for line in code.splitlines() if line.startswith("print(scorer.score("))
    shown = [float(x) for x in re.search(r"#\s*\[([^\]]*)\]", score_line).group(1).replace("...", "").split(",")]
    got = [float(x) for x in printed[0].strip("[]").split(",")]
    assert got == pytest.approx(shown, abs=0.005), f"the README says {shown}, the scorer prints {got}"
    assert "Bananas are rich in potassium." in "\n".join(printed[1:])  # the rank and the trimmed text
