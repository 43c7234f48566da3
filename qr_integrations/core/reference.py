"""The slow, obviously-correct QRHead scorer, for checking and benchmarking the fast one.

It runs the whole prompt (prefix + query span) through an *eager* copy of the model with
``output_attentions=True``: every layer, full ``tokens x tokens`` attention matrices, no early exit and
no KV-cache reuse (the null-query prompt is run from scratch too).  It is the method written the plain
way, as the reference code computes it; :class:`~qr_integrations.QRScorer` must agree with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .heads import HeadSet, HeadSpec
from .models import LoadedModel
from .prompt import Chunk, normalize_chunk
from .scorer import chunk_scores


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
        with torch.inference_mode():
            out = self.model(input_ids=tensor, output_attentions=True, use_cache=False)
        # each layer: (1, heads, T, T); mean of the query-span rows over the prefix keys
        rows = [att[0, :, prefix_len:, :prefix_len].float().mean(dim=1) for att in out.attentions]
        return torch.stack(rows)  # (layers, heads, prefix_len)

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
