"""Trim a long document to a token budget before generation.

A generator given the whole document pays for every token and may lose the relevant lines in the middle.
``QRScorer.trim`` splits the document into paragraphs, scores them all against the question in one
prompt, and keeps the best ones that fit the budget, in document order. Only the core is needed.

Run:  python examples/long_context_trim.py
"""

from __future__ import annotations

from qr_integrations import QRScorer

PARAGRAPHS = [
    "The bicycle took shape over the nineteenth century, through many small inventions in several countries.",
    (
        "In 1817 Karl Drais of Mannheim built the Laufmaschine, a two-wheeled running machine without pedals "
        "that the rider pushed along with the feet."
    ),
    (
        "During the 1860s French makers, among them Pierre Michaux, fitted pedals and cranks directly to the "
        "front wheel. These machines were nicknamed boneshakers because of their iron tyres on cobbled "
        "streets."
    ),
    (
        "The penny-farthing of the 1870s had a huge front wheel, which gave more distance per pedal turn. "
        "Riders sat high above the ground and falls were frequent and dangerous."
    ),
    (
        "In 1885 John Kemp Starley of Coventry produced the Rover safety bicycle, with two wheels of similar "
        "size and a chain driving the rear wheel. Its layout is still the layout of most bicycles."
    ),
    (
        "In 1888 the Scottish veterinarian John Boyd Dunlop developed a practical pneumatic tyre, first for "
        "his son's tricycle. Air-filled tyres made riding far more comfortable and soon replaced solid "
        "rubber."
    ),
    (
        "The freewheel, which lets the rear wheel turn while the pedals stay still, spread in the 1890s and "
        "allowed riders to coast downhill."
    ),
    (
        "Cycling clubs flourished in the 1890s bicycle boom. The bicycle gave many women new freedom of "
        "movement and influenced changes in clothing."
    ),
    ("Derailleur gears appeared in the early twentieth century; the Tour de France allowed them only from 1937."),
    ("Aluminium and later carbon-fibre frames made racing bicycles much lighter than the steel frames of earlier decades."),
    (
        "Mountain bikes emerged in California in the 1970s, when riders modified cruisers to race down the "
        "trails of Mount Tamalpais."
    ),
    (
        "Today electric bicycles with a battery-powered motor are among the fastest-growing kinds of personal "
        "transport in European cities."
    ),
    ("Many cities now run bicycle-sharing schemes in which a bicycle can be hired at one dock and returned at another."),
]
DOCUMENT = "\n\n".join(PARAGRAPHS)  # a plain text: paragraphs separated by blank lines

QUESTION = "Who developed the pneumatic tyre, and when?"
BUDGET = 120  # tokens of context allowed for the generator


def main() -> None:
    scorer = QRScorer()
    trimmed = scorer.trim(QUESTION, DOCUMENT, max_tokens=BUDGET, keep_order=True)
    print(f"Question: {QUESTION}")
    print(
        f"Kept {len(trimmed.indices)} of {trimmed.num_input_chunks} paragraphs, "
        f"{trimmed.kept_tokens} of {trimmed.input_tokens} tokens (budget {BUDGET}).\n"
    )
    best = max(range(trimmed.num_input_chunks), key=lambda i: trimmed.all_scores[i])
    for i, chunk in enumerate(trimmed.input_chunks):
        mark = "KEPT   " if i in trimmed.indices else "dropped"
        star = " <- best" if i == best else ""
        print(f"  {mark} [{trimmed.all_scores[i]:+.3f}] {chunk[:70]}...{star}")
    prompt = f"Answer the question from the context.\n\nContext:\n{trimmed.text}\n\nQuestion: {QUESTION}\nAnswer:"
    print(f"\nPrompt for the generator ({scorer.count_tokens(prompt)} tokens):\n{prompt}")


if __name__ == "__main__":
    main()
