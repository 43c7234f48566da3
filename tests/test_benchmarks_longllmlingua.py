"""LongLLMLingua as a benchmark method, offline: the tiktoken stand-in, the cache adapter, the budget.

The compressor test runs llmlingua on the tiny random llama (``tiny_model``), so it checks the plumbing (offline
construction, transformers-5 caches, the coarse stage's kept paragraphs, the budget), not the compression's quality.
"""

from __future__ import annotations

import pytest

from benchmarks.methods import LongLLMLingua, TokenizerEncoding, longllmlingua_context, tiktoken_backed_by
from benchmarks.trim_generate import context_messages, prompt_messages

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTENCE = "LongLLMLingua keeps the tokens that tell the question's answer apart: 1,500 of them, say."


@pytest.fixture(scope="module")
def tokenizer(tiny_model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_the_stand_in_encoding_round_trips_and_counts_like_its_tokenizer(tokenizer) -> None:
    enc = TokenizerEncoding(tokenizer)
    ids = enc.encode(SENTENCE)
    assert ids == tokenizer(SENTENCE, add_special_tokens=False)["input_ids"]
    assert enc.decode(ids) == SENTENCE
    assert enc.decode(enc.encode(enc.decode(ids))) == SENTENCE


def test_tiktoken_hands_out_the_stand_in_only_inside(tokenizer) -> None:
    tiktoken = pytest.importorskip("tiktoken")
    before = tiktoken.encoding_for_model
    with tiktoken_backed_by(tokenizer) as enc:
        got = tiktoken.encoding_for_model("gpt-3.5-turbo")  # what llmlingua's PromptCompressor asks for
        assert got is enc
        assert got.decode(got.encode(SENTENCE)) == SENTENCE
        assert tiktoken.get_encoding("cl100k_base") is enc
    assert tiktoken.encoding_for_model is before


def test_the_context_prompt_is_the_paragraph_prompt() -> None:
    """The trimmed conditions' prompts (and so their answer cache keys) are unchanged by the context form."""
    paras = [("Alpha", "First text."), ("Beta", "Second text.")]
    assert prompt_messages("Why?", paras) == context_messages("Why?", "Alpha\nFirst text.\n\nBeta\nSecond text.")


@pytest.fixture(scope="module")
def compressor(tiny_model: str) -> LongLLMLingua:
    pytest.importorskip("llmlingua")
    return LongLLMLingua(tiny_model)  # sockets are disabled in tests: construction is offline


def test_longllmlingua_constructs_offline_and_counts_with_its_lm(compressor: LongLLMLingua) -> None:
    assert isinstance(compressor.compressor.oai_tokenizer, TokenizerEncoding)
    assert compressor.compressor.oai_tokenizer.tokenizer is compressor.tokenizer


def test_longllmlingua_compresses_to_about_the_budget(compressor: LongLLMLingua,
                                                      questions: list[tuple[str, list[str], int]]) -> None:
    question = questions[0][0]
    chunks = [(f"Doc {i}", text) for q in questions for i, text in enumerate(q[1])]  # 20 paragraphs
    total = compressor.count("\n\n".join(f"{t}\n{x}" for t, x in chunks))
    budget = 120
    c = compressor.compress(question, chunks, budget)
    got = compressor.count(c.context)
    assert c.target_token == budget
    # llmlingua's target is approximate: on this 420-token input the compressed context lands within 25% of it
    # (SmolLM2 as the LM: 118 tokens for 120, 248 for 200; on a 12k-token HotpotQA pool 1424-1547 for 1500)
    assert 0 < got <= budget * 1.25 < total
    assert c.kept and set(c.kept) <= set(range(len(chunks))) and len(c.kept) < len(chunks)
    assert c.seconds > 0
    # a budget in another tokenizer's tokens is scaled by the tokens-per-token ratio over the input
    halved = compressor.compress(question, chunks, budget, count=lambda text: 2 * compressor.count(text))
    assert halved.target_token == budget // 2
    context, seconds = longllmlingua_context(compressor, question, chunks, budget)
    assert context == c.context and seconds > 0  # deterministic
