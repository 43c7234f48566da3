"""Framework-free core of qr-integrations: prompt, capture, calibration, aggregation, selection.

Nothing here imports LlamaIndex or LangChain.
"""

from .aggregate import HeadAttention
from .config import ConfigError, ScorerConfig
from .context import PreparedContext, QueryTooLongError
from .detection import DetectionError, DetectionExample, HeadRanking, detect_heads, rank_heads, score_heads
from .engine import ContextClosedError, ForwardEngine
from .fusion import fuse, reciprocal_rank_fusion, weighted_fusion
from .heads import HeadSet, HeadSetError, available_head_sets
from .layout import LAYOUTS
from .models import DeviceError, ModelLoadError, clear_model_cache, load_model, loaded_models
from .results import RankedChunk, RankedResults, TrimResult
from .scorer import HeadScores, QRScorer, ScorerOutOfMemoryError

__all__ = [
    "LAYOUTS",
    "ConfigError",
    "ContextClosedError",
    "DetectionError",
    "DetectionExample",
    "DeviceError",
    "ForwardEngine",
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
    "available_head_sets",
    "clear_model_cache",
    "detect_heads",
    "fuse",
    "load_model",
    "loaded_models",
    "rank_heads",
    "reciprocal_rank_fusion",
    "score_heads",
    "weighted_fusion",
]
