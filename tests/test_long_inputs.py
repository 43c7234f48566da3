"""Inputs longer than one window and the cross-window strategies (issue #15), on the real embedded model.

Small ``max_context_tokens`` force many windows over short chunks, so each test takes seconds.
"""

from __future__ import annotations

import pytest

from qr_integrations import QRScorer, ScorerConfig
from qr_integrations.core.aggregate import tournament_merge
from qr_integrations.core.config import QRHEAD_SCORING, ConfigError
from qr_integrations.core.windows import CROSS_WINDOW_STRATEGIES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST_HEADS = "1-0,2-3,3-5"
FILLER = [f"Note {i}: the committee met on day {i} and discussed the budget for the next quarter." for i in range(24)]
TOPICS = [
    "The Great Wall of China stretches thousands of kilometres across northern China.",
    "Python is a programming language created by Guido van Rossum and released in 1991.",
    "The Amazon river carries more water than any other river on Earth.",
    "Mount Everest is the highest mountain above sea level, on the border of Nepal and China.",
    "The violin is a string instrument played with a bow.",
    "Penicillin was discovered by Alexander Fleming in 1928.",
    "The Sahara is the largest hot desert in the world.",
    "Chess is a board game for two players on a checkered board of 64 squares.",
    "The Moon orbits the Earth about once every 27 days.",
    "Coffee beans are the roasted seeds of the Coffea plant.",
    "The Roman Colosseum could hold tens of thousands of spectators.",
    "Jupiter is the largest planet in the Solar System.",
]
NEEDLE = "The secret passphrase for the vault is BLUE-FALCON-42."
SEMANTIC = "Honey bees perform a waggle dance to show their hive mates the direction and distance of nectar."
SHORT = ["The Eiffel Tower is in Paris.", "Bananas are rich in potassium.", "Cats purr when content."]


def strategy_scorer(strategy: str, window: int | None = 256, heads: str | None = None) -> QRScorer:
    return QRScorer(device="cpu", **QRHEAD_SCORING, heads=heads, max_context_tokens=window, cross_window=strategy)


def close(a: list[float], b: list[float]) -> bool:
    top = max((abs(x) for x in b), default=0.0) or 1.0
    return len(a) == len(b) and all(abs(x - y) <= 1e-5 * top for x, y in zip(a, b, strict=True))


def test_config_field_round_trips_and_rejects_bad_values() -> None:
    default = ScorerConfig().cross_window
    assert default in CROSS_WINDOW_STRATEGIES
    for strategy in CROSS_WINDOW_STRATEGIES:
        cfg = ScorerConfig(cross_window=strategy)
        assert ScorerConfig.from_yaml(cfg.to_yaml()) == cfg
        assert ScorerConfig.from_json(cfg.to_json()).cross_window == strategy
    with pytest.raises(ConfigError, match="cross_window.*per_window.*got 'windowed'"):
        ScorerConfig(cross_window="windowed")
    with pytest.raises(ConfigError, match="cross_window"):
        ScorerConfig.from_dict({"cross_window": None})
    with pytest.raises(ConfigError, match="cross_window"):
        QRScorer(cross_window="max")


@pytest.mark.parametrize("strategy", CROSS_WINDOW_STRATEGIES)
def test_one_window_inputs_score_as_today(strategy: str) -> None:
    q = "Which fruit is rich in potassium?"
    today = strategy_scorer("per_window", None, FAST_HEADS).score(q, SHORT)
    assert strategy_scorer(strategy, None, FAST_HEADS).score(q, SHORT) == today


@pytest.mark.parametrize("strategy", CROSS_WINDOW_STRATEGIES)
def test_prepared_context_equals_score_over_several_windows(strategy: str) -> None:
    s = strategy_scorer(strategy, 256, FAST_HEADS)
    chunks = [*FILLER[:10], SEMANTIC, *TOPICS[:6], NEEDLE]
    assert len(s.window_plan(chunks)) > 2
    with s.context(chunks) as ctx:
        for q in ("What is the passphrase of the vault?", "How do bees share where food is?"):
            got, plain = ctx.score(q), s.score(q, chunks)
            assert close(got, plain) and ctx.rank(q).indices == s.rank(q, chunks).indices
            assert all(type(x) is float for x in got)


@pytest.mark.parametrize("position", [0, 9, 19])
def test_default_strategy_finds_a_needle_anywhere_and_keeps_input_order(scorer: QRScorer, position: int) -> None:
    s = QRScorer(device="cpu", **QRHEAD_SCORING, max_context_tokens=256)
    chunks = [*FILLER[:19]]
    chunks.insert(position, NEEDLE)
    assert len(s.window_plan(chunks)) >= 4
    scores = s.score("What is the secret passphrase for the vault?", chunks)
    assert len(scores) == len(chunks)
    assert max(range(len(scores)), key=scores.__getitem__) == position


def test_default_strategy_keeps_a_semantic_gold_chunk_across_windows(scorer: QRScorer) -> None:
    s = QRScorer(device="cpu", **QRHEAD_SCORING, max_context_tokens=256)
    chunks = [*TOPICS[:6], *FILLER[:3], SEMANTIC, *FILLER[3:6], *TOPICS[6:]]
    assert len(s.window_plan(chunks)) >= 3
    ranking = s.rank("How do insects tell each other where to find food?", chunks)
    assert 9 in ranking.indices[:2]


def test_tournament_survivors_rank_above_the_eliminated() -> None:
    merged = tournament_merge([5.0, 0.1, 4.0, 0.2], [1, 3], [0.3, 0.9])
    order = sorted(range(4), key=lambda i: -merged[i])
    assert order == [3, 1, 0, 2] and merged[1] == 0.3 and merged[3] == 0.9


def test_overlap_sees_every_chunk_twice() -> None:
    s = strategy_scorer("overlap", 256, FAST_HEADS)
    chunks = [*FILLER[:12]]
    att = s.head_attention("Which day did the committee meet?", chunks)
    assert len(att.layouts) == 2
    for windows in att.layouts:
        assert sorted(o for w in windows for o in w.owners) == list(range(len(chunks)))
    first = [tuple(w.owners) for w in att.layouts[0]]
    assert first != [tuple(w.owners) for w in att.layouts[1]]


def test_pieces_cut_long_chunks_only_when_several_windows_are_needed() -> None:
    long_chunk = " ".join(f"Sentence {i} of the report covers the budget." for i in range(40))
    s = strategy_scorer("pieces", 256, FAST_HEADS)
    several = s.head_attention("What does the report cover?", [long_chunk, *FILLER[:6]])
    assert sum(o == 0 for w in several.layouts[0] for o in w.owners) > 2  # pieces of about 128 tokens
    one = strategy_scorer("pieces", None, FAST_HEADS).head_attention("What does the report cover?", [long_chunk])
    assert [w.owners for w in one.layouts[0]] == [(0,)]


def test_tournament_runs_a_second_round_over_the_survivors() -> None:
    from qr_integrations.core.engine import ForwardEngine

    class Counting(ForwardEngine):
        prefixes = 0

        def prepare(self, prefix_ids, plan, **kwargs):  # type: ignore[no-untyped-def]
            Counting.prefixes += 1
            return super().prepare(prefix_ids, plan, **kwargs)

    s = strategy_scorer("tournament", 256, FAST_HEADS)
    s.engine = Counting(s.loaded)
    chunks = [*FILLER[:14], NEEDLE]
    windows = len(s.window_plan(chunks))
    scores = s.score("What is the secret passphrase for the vault?", chunks)
    assert windows > 1 and Counting.prefixes > windows and len(scores) == len(chunks)
