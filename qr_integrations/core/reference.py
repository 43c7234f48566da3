"""The slow, obviously-correct QRHead scorer, for checking and benchmarking the fast one.

It runs the whole prompt (prefix + query span) through an *eager* copy of the model, whose attention
modules materialise the full ``tokens x tokens`` softmax matrix of every head: every layer, no early exit,
no KV-cache reuse (the null-query prompt runs from scratch too).  A forward hook on each attention module
reads that matrix (the weights eager attention returns, as ``output_attentions=True`` would collect them)
and keeps the mean of the query-span rows, so only one layer's matrix is alive at a time.  It is the
method written the plain way; :class:`~qr_integrations.QRScorer` must agree with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch

from .aggregate import chunk_scores
from .heads import HeadSet, HeadSpec
from .models import LoadedModel
from .prompt import Chunk, normalize_chunk


class ReferenceScorer:
    """Eager, all-layers, no-cache scorer over the same weights and prompt as a :class:`LoadedModel`.

    Example:
        >>> from qr_integrations import QRScorer
        >>> fast = QRScorer()  # doctest: +SKIP
        >>> slow = ReferenceScorer(fast.loaded)  # doctest: +SKIP
        >>> slow.score("capital of France?", ["Paris is the capital.", "Cats purr."])  # doctest: +SKIP
    """

    def __init__(self, loaded: LoadedModel) -> None:
        from transformers import AutoModel

        self.loaded = loaded
        self.model = AutoModel.from_pretrained(loaded.source, dtype=loaded.dtype, attn_implementation="eager")
        self.model.to(loaded.device).eval()

    def _attention(self, ids: list[int], prefix_len: int) -> torch.Tensor:
        tensor = torch.tensor([ids], device=self.loaded.device)
        rows: list[torch.Tensor] = []

        def keep_query_rows(_module: torch.nn.Module, _args: object, output: tuple) -> None:
            weights = output[1]  # (1, heads, T, T) softmax probabilities from eager attention
            rows.append(weights[0, :, prefix_len:, :prefix_len].float().mean(dim=1))

        attn_modules = [cast(torch.nn.Module, layer.self_attn) for layer in self.loaded_layers()]
        handles = [m.register_forward_hook(keep_query_rows) for m in attn_modules]
        try:
            with torch.inference_mode():
                self.model(input_ids=tensor, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        if len(rows) != self.loaded.num_layers:
            raise RuntimeError(f"captured {len(rows)} layers of attention, expected {self.loaded.num_layers}")
        return torch.stack(rows)  # (layers, heads, prefix_len)

    def loaded_layers(self) -> torch.nn.ModuleList:
        """The eager model's decoder layers."""
        from .models import decoder_layers

        return decoder_layers(self.model, self.loaded.num_layers)

    def score(
        self,
        query: str,
        chunks: Sequence[Chunk],
        heads: HeadSpec = "all",
        null_query: str = "N/A",
        calibrate: bool = True,
        outlier_std: float | None = 2.0,
    ) -> list[float]:
        """Scores of ``chunks`` for ``query``, computed the slow way."""
        norm = [normalize_chunk(c, i) for i, c in enumerate(chunks)]
        enc = self.loaded.builder.encode(query, norm, null_query=null_query)
        p = len(enc.prefix_ids)
        att = self._attention(enc.prefix_ids + enc.query_ids, p)
        if calibrate:
            att = att - self._attention(enc.prefix_ids + enc.null_ids, p)
        selected = HeadSet.parse(heads).resolve(self.loaded.num_layers, self.loaded.num_heads)
        vec = torch.stack([att[layer, head] for layer, head in selected]).sum(dim=0, keepdim=True)
        return [float(x) for x in chunk_scores(vec, enc.chunk_spans, outlier_std)[0].tolist()]
