"""Quickstart: rank a handful of chunks with the embedded SmolLM2-135M-Instruct on the CPU.

Run:  python examples/quickstart.py
"""

from qr_integrations import QRScorer

query = "Which planet has the most prominent rings?"
chunks = [
    "Mars is the fourth planet from the Sun and is often called the Red Planet.",
    "Saturn is the sixth planet from the Sun and has the most prominent ring system of any planet.",
    "The Moon is Earth's only natural satellite.",
    "Jupiter's Great Red Spot is a storm larger than Earth.",
    "Bananas are an excellent source of potassium.",
]

scorer = QRScorer()  # first run converts the embedded GGUF once (~20 s), later runs load in seconds
print(f"{scorer!r} on {scorer.loaded.device}, heads: {scorer.head_set.name or scorer.head_set.to_string()}")
print(f"Query: {query}\n")
for item in scorer.rank(query, chunks):
    print(f"{item.rank}. [{item.score:+.4f}] {item.text}")

trimmed = scorer.trim(query, "\n\n".join(chunks), top_n=2)
print(f"\nTrimmed context ({trimmed.kept_tokens} of {trimmed.input_tokens} tokens):\n{trimmed.text}")
