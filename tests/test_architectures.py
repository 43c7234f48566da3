"""The capture works across decoder families: tiny randomly initialised models (plumbing, not quality).

Each model shares the embedded model's tokenizer; its scores must equal the slow eager reference.
"""

from __future__ import annotations

import pytest
import torch

from qr_integrations import QRScorer
from qr_integrations.core.config import QRHEAD_SCORING
from qr_integrations.core.reference import ReferenceScorer

SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_position_embeddings": 2048}


def _configs() -> dict[str, object]:
    from transformers import Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

    return {
        "llama": LlamaConfig(**SMALL),
        "qwen2": Qwen2Config(**SMALL),
        "qwen3": Qwen3Config(head_dim=16, **SMALL),
        "mistral": MistralConfig(sliding_window=24, **SMALL),
        "gemma3": Gemma3TextConfig(head_dim=16, sliding_window=24, query_pre_attn_scalar=16,
                                   layer_types=["sliding_attention", "full_attention", "sliding_attention"], **SMALL),
    }


@pytest.fixture(scope="module")
def tokenizer_source(scorer: QRScorer) -> str:
    return scorer.loaded.source


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3", "mistral", "gemma3"])
def test_tiny_model_matches_reference(arch: str, tmp_path, tokenizer_source: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_source)
    cfg = _configs()[arch]
    cfg.vocab_size = len(tok)  # type: ignore[attr-defined]
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)

    query = "Which fruit has potassium?"
    chunks = ["Bananas are rich in potassium.", "Paris is the capital of France.", "Cats purr when content."]
    for heads in ("all", "0-1,2-3"):
        fast = QRScorer(str(tmp_path), heads=heads, device="cpu", **QRHEAD_SCORING)
        slow = ReferenceScorer(fast.loaded)
        got, want = fast.score(query, chunks), slow.score(query, chunks, heads=heads)
        tol = 1e-4 * max(abs(x) for x in want)
        assert got == pytest.approx(want, abs=tol), (arch, heads)
