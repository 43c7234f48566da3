"""Framework-free core of qr-integrations: prompt, capture, calibration, aggregation, selection.

Nothing here imports LlamaIndex or LangChain.
"""

from .config import ConfigError, ScorerConfig
from .detection import DetectionError, DetectionExample, HeadRanking, detect_heads, rank_heads, score_heads
from .fusion import fuse, reciprocal_rank_fusion, weighted_fusion
from .heads import HeadSet, HeadSetError, available_head_sets
from .layout import LAYOUTS
from .models import DeviceError, ModelLoadError, clear_model_cache, load_model, loaded_models
from .results import RankedChunk, RankedResults, TrimResult
from .scorer import HeadScores, QRScorer, ScorerOutOfMemoryError

__all__ = [
    "LAYOUTS",
    "ConfigError",
    "DetectionError",
    "DetectionExample",
    "DeviceError",
    "HeadRanking",
    "HeadScores",
    "HeadSet",
    "HeadSetError",
    "ModelLoadError",
    "QRScorer",
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
