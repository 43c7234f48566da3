"""QRHead re-ranking for LlamaIndex: ``from llama_index.postprocessor.qrhead_rerank import QRHeadRerank``.

``QRScorer`` is re-exported for sharing one loaded model between components: ``QRHeadRerank(scorer=...)``.
"""

from importlib import metadata

from llama_index.postprocessor.qrhead_rerank.base import QRHeadRerank

from qr_integrations import QRScorer

try:
    __version__ = metadata.version("llama-index-postprocessor-qrhead-rerank")
except metadata.PackageNotFoundError:  # run from a source checkout
    __version__ = ""

__all__ = ["QRHeadRerank", "QRScorer", "__version__"]
