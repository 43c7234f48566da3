"""The ``qr-integrations`` command line: rank chunks, trim long texts.

Examples::

    qr-integrations rank --query "Which fruit has potassium?" --chunks chunks.jsonl --top-n 3
    qr-integrations trim --query "Which fruit has potassium?" --text report.txt --max-tokens 1000
    qr-integrations detect --model M --data examples.jsonl --top-k 16 --metric ndcg@10 --out heads.yaml --plot heads.png

Bad input exits with status 2 and a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .core.layout import LAYOUTS

EXIT_BAD_INPUT = 2
LAYOUT_HELP = ("prompt order of the chunks: input (as given), reversed (the first chunk next to the query: for "
               "best-first retriever output), both (two passes, averaged); default: the config's, else input")


class BadInputError(Exception):
    """Input the user can fix; reported as one line with exit status 2."""


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"file {path!r} does not exist")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"file {path!r} is not UTF-8 text: {exc}") from exc


def read_chunks(path: str) -> list[Any]:
    """Chunks from a ``.jsonl`` file (one JSON string or ``{"text", "title"}`` object per line) or a
    text file (one chunk per blank-line-separated paragraph)."""
    body = _read_text(path)
    if path.endswith(".jsonl") or path.endswith(".ndjson"):
        chunks: list[Any] = []
        for n, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInputError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
            if isinstance(item, str) or (isinstance(item, dict) and isinstance(item.get("text"), str)):
                chunks.append(item)
            else:
                raise BadInputError(f'{path}:{n}: expected a JSON string or an object with a "text" string')
        return chunks
    return [p.strip() for p in body.split("\n\n") if p.strip()]


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help="hub id, local folder or .gguf file (default: embedded SmolLM2-135M)")
    g.add_argument("--heads", default=None, help="'all', 'L-H,L-H', a shipped set name or a YAML file")
    g.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, ... (default: auto)")
    g.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (default: auto)")
    g.add_argument("--config", default=None, help="scorer config file (.yaml/.json); flags override it")
    g.add_argument("--max-context-tokens", type=int, default=None, help="tokens per forward pass (windows beyond)")
    g.add_argument("--layout", choices=LAYOUTS, default=None, help=LAYOUT_HELP)


def _scorer(args: argparse.Namespace) -> Any:
    from .core import QRScorer

    options: dict[str, Any] = {"show_progress": True}
    if args.max_context_tokens is not None:
        options["max_context_tokens"] = args.max_context_tokens
    if args.layout is not None:
        options["layout"] = args.layout
    return QRScorer(
        args.model, heads=args.heads, device=args.device, dtype=args.dtype, config=args.config, **options
    )


def _cmd_rank(args: argparse.Namespace) -> int:
    chunks = read_chunks(args.chunks)
    results = _scorer(args).rank(args.query, chunks, top_n=args.top_n)
    for item in results:
        print(json.dumps(item.to_dict(), ensure_ascii=False))
    return 0


def _cmd_trim(args: argparse.Namespace) -> int:
    text = _read_text(args.text)
    scorer = _scorer(args)
    result = scorer.trim(args.query, text, max_tokens=args.max_tokens, top_n=args.top_n, keep_order=not args.best_first)
    print(result.text)
    print(
        f"kept {len(result.indices)} of {result.num_input_chunks} chunks, "
        f"{result.kept_tokens} of {result.input_tokens} tokens",
        file=sys.stderr,
    )
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    from .core import QRScorer
    from .core.detection import check_metric, read_examples, score_heads

    metric = check_metric(args.metric)
    if args.top_k < 1:
        raise BadInputError(f"--top-k must be a positive integer, got {args.top_k}")
    out = Path(args.out)
    for target in [out, *([Path(args.plot)] if args.plot else [])]:
        if not target.parent.exists():
            raise BadInputError(f"folder {str(target.parent)!r} for {str(target)!r} does not exist")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise BadInputError("--plot needs matplotlib: pip install 'qr-integrations[plots]'") from exc
    examples = read_examples(args.data)
    options: dict[str, Any] = {}
    if args.max_context_tokens is not None:
        options["max_context_tokens"] = args.max_context_tokens
    if args.layout is not None:
        options["layout"] = args.layout
    scorer = QRScorer(args.model, heads="all", device=args.device, dtype=args.dtype, **options)
    ranking = score_heads(scorer, examples, metric, show_progress=not args.quiet)
    head_set = ranking.head_set(args.top_k, name=args.name or out.stem)
    head_set.to_yaml(out)
    if args.plot:
        ranking.plot(args.plot, top_k=args.top_k)
    best = ", ".join(f"{la}-{h} ({s:.3f})" for (la, h), s in ranking.top(min(5, args.top_k)))
    print(
        f"{ranking.model}: {len(ranking.heads)} heads ranked by {metric} on {ranking.num_examples} examples; "
        f"best: {best}; all-head mean {float(ranking.values.mean()):.3f}",
        file=sys.stderr,
    )
    print(str(out))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"rank": _cmd_rank, "trim": _cmd_trim, "detect": _cmd_detect}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands register themselves here)."""
    parser = argparse.ArgumentParser(
        prog="qr-integrations",
        description="Score, rank and trim context chunks with a decoder LLM's query-focused retrieval heads (QRHead).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    rank = sub.add_parser("rank", help="rank chunks for a query; prints JSON lines best first",
                          description="Rank chunks for a query. Output: one JSON object per line, best first.")
    rank.add_argument("--query", "-q", required=True, help="the question or search text")
    rank.add_argument("--chunks", "-c", required=True,
                      help='.jsonl (a string or {"text", "title"} per line) or a text file of paragraphs; - for stdin')
    rank.add_argument("--top-n", type=int, default=None, help="print only the best N")
    _add_model_args(rank)

    trim = sub.add_parser("trim", help="trim a long text to the chunks that matter; prints the trimmed text",
                          description="Split a long text into chunks and keep the best within a budget.")
    trim.add_argument("--query", "-q", required=True, help="the question or search text")
    trim.add_argument("--text", "-t", required=True, help="the long text file (- for stdin)")
    trim.add_argument("--max-tokens", type=int, default=None, help="token budget of the kept chunks")
    trim.add_argument("--top-n", type=int, default=None, help="keep at most N chunks")
    trim.add_argument("--best-first", action="store_true", help="print kept chunks best first, not in text order")
    _add_model_args(trim)

    detect = sub.add_parser(
        "detect",
        help="detect a model's QR heads from labelled examples; writes a head-set YAML",
        description="Score every attention head on labelled examples (one forward pass each), rank heads by their "
        "own retrieval quality, write the best as a head-set YAML (use it with --heads FILE).",
    )
    detect.add_argument("--data", "-d", required=True,
                        help='JSONL, one example per line: {"query", "chunks", "gold"} (see docs/heads.md)')
    detect.add_argument("--top-k", type=int, default=16, help="heads to keep (default: 16)")
    detect.add_argument("--metric", default="ndcg@10", help="ndcg@10 (any ndcg@K) or qrscore (default: ndcg@10)")
    detect.add_argument("--out", "-o", required=True, help="head-set YAML to write")
    detect.add_argument("--plot", default=None, help="also write a heatmap PNG (layers x heads; needs matplotlib)")
    detect.add_argument("--name", default=None, help="name stored in the YAML (default: the --out file stem)")
    detect.add_argument("--quiet", action="store_true", help="no progress bar")
    g = detect.add_argument_group("model")
    g.add_argument("--model", default=None, help="hub id, local folder or .gguf file (default: embedded SmolLM2-135M)")
    g.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, ... (default: auto)")
    g.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (default: auto)")
    g.add_argument("--max-context-tokens", type=int, default=None, help="tokens per forward pass (windows beyond)")
    g.add_argument("--layout", choices=LAYOUTS, default=None, help=LAYOUT_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qr-integrations`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_BAD_INPUT
    from .core import ConfigError, HeadSetError, ModelLoadError

    try:
        return COMMANDS[args.command](args)
    except (BadInputError, ValueError, TypeError, ConfigError, HeadSetError, ModelLoadError) as exc:
        print(f"qr-integrations {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
