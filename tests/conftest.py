"""Shared fixtures: the real embedded model, loaded once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from qr_integrations import QRScorer
from qr_integrations.core.config import QRHEAD_SCORING

# Hand-written questions: (query, chunks, index of the gold chunk).
QUESTIONS: list[tuple[str, list[str], int]] = [
    (
        "Which fruit is rich in potassium?",
        [
            "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
            "Bananas are an excellent source of potassium and vitamin B6.",
            "The Great Wall of China stretches thousands of kilometres across northern China.",
            "Python is a programming language created by Guido van Rossum and released in 1991.",
        ],
        1,
    ),
    (
        "Who created the Python programming language?",
        [
            "Mount Everest is the highest mountain above sea level, on the border of Nepal and China.",
            "The Amazon rainforest covers much of the Amazon basin of South America.",
            "Python is a programming language created by Guido van Rossum and released in 1991.",
            "Honey bees communicate the location of flowers with a waggle dance.",
        ],
        2,
    ),
    (
        "Where is the Eiffel Tower?",
        [
            "Photosynthesis converts light energy into chemical energy stored in glucose.",
            "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
            "The violin is a string instrument played with a bow.",
            "Saturn is the sixth planet from the Sun and has a prominent ring system.",
        ],
        1,
    ),
    (
        "What is the highest mountain on Earth?",
        [
            "Bananas are an excellent source of potassium and vitamin B6.",
            "The violin is a string instrument played with a bow.",
            "Honey bees communicate the location of flowers with a waggle dance.",
            "Mount Everest is the highest mountain above sea level, on the border of Nepal and China.",
        ],
        3,
    ),
    (
        "How do bees tell each other where flowers are?",
        [
            "Saturn is the sixth planet from the Sun and has a prominent ring system.",
            "Honey bees communicate the location of flowers with a waggle dance.",
            "The Great Wall of China stretches thousands of kilometres across northern China.",
            "Photosynthesis converts light energy into chemical energy stored in glucose.",
        ],
        1,
    ),
]


@pytest.fixture(scope="session")
def scorer() -> QRScorer:
    """The embedded model with its default head set (the detected smollm2-135m-instruct-mix, docs/heads.md),
    scoring as QRHead does (``QRHEAD_SCORING``: one order, the null query subtracted, no prior), which is
    what the reference scorer and the per-head results compute. ``default_scorer`` is the library's defaults."""
    s = QRScorer(device="cpu", **QRHEAD_SCORING)
    _ = s.loaded
    return s


@pytest.fixture(scope="session")
def default_scorer(scorer: QRScorer) -> QRScorer:
    """The embedded model at the library's defaults (position corrections on), sharing the loaded model."""
    return QRScorer(device="cpu")


@pytest.fixture(scope="session")
def questions() -> list[tuple[str, list[str], int]]:
    return QUESTIONS


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread while a module runs (restored after); modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``. Their many small forward passes are as
    fast on one thread alone, and several times faster on a CPU shared with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 3-layer x 4-head random llama with the embedded model's tokenizer (chat template, fast)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from qr_integrations.core.models import resolve_source

    _, folder = resolve_source(None)
    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    return str(out)
