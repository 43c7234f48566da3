"""Speed and memory of the scorer against a plain forward and the slow reference (issue #2).

For each context length, in one process and interleaved (so machine load hits every method alike):

* ``scorer``: ``QRScorer.score`` (prefix pass + query pass + null pass over the cached prefix);
* ``plain@deepest``: one plain SDPA forward of the same prompt tokens (prefix + query span) through the
  layers up to the deepest selected head, no LM head: the physical floor of the scorer's work;
* ``plain@all``: the same through every layer;
* ``reference``: :class:`~qr_integrations.core.reference.ReferenceScorer` (eager attention, every layer,
  both prompts run from scratch), skipped above ``--reference-max``.

Time is the median of ``--repeats`` runs. Memory is the peak growth of the resident set during one call,
sampled every 2 ms by a background thread, each (method, length) in a fresh subprocess so that no
allocator cache from an earlier call hides the growth (``torch.cuda.max_memory_allocated`` on a GPU).

Run:  python -m benchmarks run speed --lengths 1024 2048 4096 8192 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks import harness as H
from qr_integrations import QRScorer
from qr_integrations.core.capture import CaptureState, capturing
from qr_integrations.core.reference import ReferenceScorer

WORDS = ["the", "study", "measured", "protein", "expression", "in", "cells", "treated", "with", "the", "compound", "and", "found", "that", "levels", "rose", "sharply", "after", "two", "days", "while", "control", "samples", "stayed", "flat", "across", "every", "replicate", "in", "the", "trial", "cohort"]
QUERY = "Which treatment raised protein expression after two days?"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakMemory:
    """Peak memory growth during a block: CUDA allocator peak, or sampled RSS on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base = _rss_bytes()
        self._stop = threading.Event()
        self._max = self.base

        def sample() -> None:
            while not self._stop.is_set():
                self._max = max(self._max, _rss_bytes())
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, _rss_bytes()) - self.base


def make_chunks(scorer: QRScorer, context_tokens: int, data_dir: Path | None) -> list[str]:
    """Chunks of real text (SciFact abstracts when available) adding up to about ``context_tokens``."""
    texts: list[str] = []
    corpus = data_dir / "scifact" / "corpus.jsonl" if data_dir else None
    if corpus is not None and corpus.is_file():
        with corpus.open() as f:
            for line in f:
                doc = json.loads(line)
                texts.append(" ".join(doc["text"].split()[:180]))
                if len(texts) >= 400:
                    break
    else:
        texts = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(150)) for i in range(400)]
    chunks: list[str] = []
    used = 0
    for text in texts:
        n = scorer.count_tokens(text) + 4
        if used + n > context_tokens:
            break
        chunks.append(text)
        used += n
    return chunks


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, int]:
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    return elapsed, mem.peak


def plain_forward(scorer: QRScorer, ids: list[int], stop_after: int | None) -> None:
    """A plain SDPA forward of ``ids`` through the decoder, optionally stopped after a layer."""
    lm = scorer.loaded
    state = CaptureState(heads_by_layer={}, context_len=0, stop_after_layer=stop_after, capture=False)
    tensor = torch.tensor([ids], device=lm.device)
    from qr_integrations.core.capture import EarlyExit

    with torch.inference_mode(), capturing(state):
        try:
            lm.model(input_ids=tensor, use_cache=False)
        except EarlyExit:
            pass


def build(args: argparse.Namespace) -> tuple[QRScorer, QRScorer, ReferenceScorer, int]:
    """The scorer under test, an all-heads scorer, the slow reference, and the deepest selected layer."""
    window = max(args.lengths) + 512
    scorer = QRScorer(args.model, heads=args.heads, device=args.device, dtype=args.dtype, max_context_tokens=window)
    lm = scorer.loaded
    head_set = scorer.head_set
    deepest = head_set.max_layer if head_set.max_layer is not None else lm.num_layers - 1
    all_heads = QRScorer(args.model, heads="all", device=args.device, dtype=args.dtype, max_context_tokens=window)
    return scorer, all_heads, ReferenceScorer(lm), deepest


def methods_for(
    length: int, args: argparse.Namespace, scorer: QRScorer, all_heads: QRScorer, reference: ReferenceScorer, deepest: int
) -> tuple[int, dict[str, Callable[[], Any]]]:
    """The timed callables at one context length, and the prompt's token count."""
    chunks = make_chunks(scorer, length, args.data_dir)
    enc = scorer.loaded.builder.encode(QUERY, [(None, c) for c in chunks])
    ids = enc.prefix_ids + enc.query_ids
    head_set = scorer.head_set
    methods: dict[str, Callable[[], Any]] = {
        "scorer": lambda: scorer.score(QUERY, chunks),
        "plain@deepest": lambda: plain_forward(scorer, ids, deepest),
        "plain@all": lambda: plain_forward(scorer, ids, None),
    }
    if not head_set.is_all:
        methods["scorer(all heads)"] = lambda: all_heads.score(QUERY, chunks)
    if length <= args.reference_max:
        methods["reference"] = lambda: reference.score(QUERY, chunks, heads=head_set)
    return len(ids), methods


def memory_probe(args: argparse.Namespace) -> None:
    """Subprocess mode: run one method once at one length and print its peak memory growth."""
    scorer, all_heads, reference, deepest = build(args)
    _, methods = methods_for(args.lengths[0], args, scorer, all_heads, reference, deepest)
    _, peak = timed(methods[args.memory_probe], scorer.loaded.device)
    print(json.dumps({"peak_mib": peak / 2**20}))


def probe_memory(args: argparse.Namespace, method: str, length: int) -> float | None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "benchmarks.speed", "--memory-probe", method, "--lengths", str(length),
           "--reference-max", str(args.reference_max), "--data-dir", str(args.data_dir),
           "--device", args.device, "--dtype", args.dtype]
    if args.model:
        cmd += ["--model", args.model]
    if args.heads:
        cmd += ["--heads", args.heads]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return float(json.loads(line)["peak_mib"])
    print(f"memory probe {method}@{length} failed: {out.stderr[-500:]}")
    return None


def main(argv: list[str] | None = None) -> None:
    ap = H.BenchParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model (default: embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--heads", default=None, help="head set under test (default: the model's default set)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference-max", type=int, default=8192, help="skip the slow reference above this length")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/speed.json"))
    args = ap.parse_args(argv)
    if args.memory_probe:
        memory_probe(args)
        return

    from tqdm.auto import tqdm

    scorer, all_heads, reference, deepest = build(args)
    lm = scorer.loaded
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    bar = tqdm(total=len(args.lengths) * (args.repeats + 1), desc="speed", unit="round")
    for length in args.lengths:
        n_tokens, methods = methods_for(length, args, scorer, all_heads, reference, deepest)
        for name, fn in methods.items():  # warm-up, untimed (the reference is too slow to run twice)
            if name != "reference":
                fn()
        samples: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(args.repeats):
            for name, fn in methods.items():
                samples[name].append(timed(fn, lm.device)[0])
            bar.update(1)
        for name, times in samples.items():
            peak = None if args.no_memory else probe_memory(args, name, length)
            rows.append({"tokens": n_tokens, "target": length, "method": name,
                         "seconds": statistics.median(times), "all_seconds": times, "peak_mib": peak})
        bar.update(1)
        result = save(args, scorer, deepest, rows)  # after every length, so a long run keeps what it measured
    bar.close()
    print(markdown(result))


def save(args: argparse.Namespace, scorer: QRScorer, deepest: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the result JSON; rows of other lengths already in ``--out`` (same model and heads) are kept."""
    lm = scorer.loaded
    result = {
        "model": lm.name, "device": str(lm.device), "dtype": str(lm.dtype), "heads": scorer.head_set.to_string(),
        "deepest_layer": deepest, "num_layers": lm.num_layers, "repeats": args.repeats,
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "transformers": __import__("transformers").__version__},
        "rows": rows,
    }
    if args.out.is_file():
        old = json.loads(args.out.read_text())
        if old.get("model") == result["model"] and old.get("heads") == result["heads"]:
            mine = {r["target"] for r in rows}
            result["rows"] = [r for r in old["rows"] if r["target"] not in mine] + rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


def markdown(result: dict[str, Any]) -> str:
    """A Markdown table of a speed result with ratios against the plain forwards."""
    by_len: dict[int, dict[str, dict[str, Any]]] = {}
    for r in result["rows"]:
        by_len.setdefault(r["target"], {})[r["method"]] = r
    lines = [
        f"model {result['model']} on {result['device']} ({result['dtype']}), heads: "
        f"{'all' if result['heads'] == 'all' else str(len(result['heads'].split(','))) + ' heads'}, "
        f"deepest layer {result['deepest_layer']} of {result['num_layers']}",
        "",
        "| tokens | scorer s | plain@deepest s | plain@all s | reference s | scorer / plain@deepest | "
        "scorer / plain@all | reference / scorer | scorer peak MiB | plain@deepest peak MiB | reference peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for length in sorted(by_len):
        m = by_len[length]
        s, pd, pa, ref = (m.get(k) for k in ("scorer", "plain@deepest", "plain@all", "reference"))
        assert s is not None and pd is not None and pa is not None

        def fmt(x: dict[str, Any] | None, key: str = "seconds", spec: str = ".2f") -> str:
            return "—" if x is None or x.get(key) is None else format(x[key], spec)

        lines.append(
            f"| {s['tokens']} | {fmt(s)} | {fmt(pd)} | {fmt(pa)} | {fmt(ref)} | "
            f"{s['seconds'] / pd['seconds']:.2f}x | {s['seconds'] / pa['seconds']:.2f}x | "
            f"{'—' if ref is None else format(ref['seconds'] / s['seconds'], '.1f') + 'x'} | "
            f"{fmt(s, 'peak_mib', '.0f')} | {fmt(pd, 'peak_mib', '.0f')} | {fmt(ref, 'peak_mib', '.0f')} |"
        )
    return "\n".join(lines)
