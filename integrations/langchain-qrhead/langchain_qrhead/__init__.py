"""QRHead re-ranking for LangChain: ``from langchain_qrhead import QRHeadRerank``.

``QRScorer`` is re-exported for sharing one loaded model between components: ``QRHeadRerank(scorer=...)``.
"""

from importlib import metadata

from langchain_qrhead.rerank import QRHeadRerank
from qr_integrations import QRScorer

try:
    __version__ = metadata.version("langchain-qrhead")
except metadata.PackageNotFoundError:  # run from a source checkout
    __version__ = ""

__all__ = ["QRHeadRerank", "QRScorer", "__version__"]
