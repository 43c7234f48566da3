"""qr-integrations: QRHead re-ranking and context trimming for LlamaIndex and LangChain.

Example:
    >>> from qr_integrations import QRScorer
    >>> scorer = QRScorer()  # the embedded SmolLM2-135M-Instruct, on the CPU
    >>> scorer.rank("Which fruit has potassium?", ["Paris is in France.", "Bananas have potassium."]).indices
    [1, 0]

The framework adapters live in :mod:`qr_integrations.llama_index` and :mod:`qr_integrations.langchain`
and are imported only when you import them.
"""

from .core import (
    ConfigError,
    ContextClosedError,
    DetectionError,
    DetectionExample,
    DeviceError,
    HeadAttention,
    HeadRanking,
    HeadScores,
    HeadSet,
    HeadSetError,
    ModelLoadError,
    PreparedContext,
    QRScorer,
    QueryTooLongError,
    RankedChunk,
    RankedResults,
    ScorerConfig,
    ScorerOutOfMemoryError,
    TrimResult,
    available_head_sets,
    clear_model_cache,
    detect_heads,
    fuse,
    load_model,
    loaded_models,
    rank_heads,
    score_heads,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ContextClosedError",
    "DetectionError",
    "DetectionExample",
    "DeviceError",
    "HeadAttention",
    "HeadRanking",
    "HeadScores",
    "HeadSet",
    "HeadSetError",
    "ModelLoadError",
    "PreparedContext",
    "QRScorer",
    "QueryTooLongError",
    "RankedChunk",
    "RankedResults",
    "ScorerConfig",
    "ScorerOutOfMemoryError",
    "TrimResult",
    "__version__",
    "available_head_sets",
    "clear_model_cache",
    "detect_heads",
    "fuse",
    "load_model",
    "loaded_models",
    "rank_heads",
    "score_heads",
]
