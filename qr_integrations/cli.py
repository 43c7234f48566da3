"""The ``qr-integrations`` command line: rank chunks, trim long texts, detect heads.

Examples::

    qr-integrations rank --query "Which fruit has potassium?" --chunks chunks.jsonl --top-n 3
    head -3 chunks.jsonl | qr-integrations rank -q "Which fruit has potassium?" -c -
    qr-integrations trim --query "Which fruit has potassium?" --text report.txt --max-tokens 1000 --json
    qr-integrations detect --model M --data examples.jsonl --top-k 16 --metric ndcg@10 --out heads.yaml --plot heads.png
    qr-integrations serve --port 8080                      # rerank server (TEI, Infinity, Jina, Cohere APIs)
    qr-integrations rank-file rows.jsonl ranked.jsonl      # {query, chunks} rows -> + scores, ranking

Input formats (``--format``, default ``auto``):

* ``jsonl``: one chunk per line, a JSON string or an object ``{"text": ..., "title": ..., "id": ...}``
  (``title`` and ``id`` optional; ``id`` is echoed in the output);
* ``json``: one JSON array of such items;
* ``text``: plain text; ``rank`` takes each blank-line-separated paragraph as a chunk, ``trim`` splits it
  into chunks of up to ``chunk_size`` tokens (paragraphs, then sentences).

``auto`` reads ``.jsonl``/``.ndjson`` files as JSONL, ``.json`` as JSON and ``.txt``/``.md`` as text; other
files and stdin are sniffed: a JSON array is JSON, a first line that is a JSON string or object makes JSONL
(then every line must be), anything else is text. Pass ``--format`` to force one.

Bad input (a missing file, invalid JSON, no chunks at all) exits with status 2 and a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .core.config import RANKED_INPUT_LAYOUT, ScorerConfig
from .core.layout import LAYOUTS

EXIT_BAD_INPUT = 2
SCORE_NORMALIZATIONS = ("none", "minmax")  # qr_integrations.serving's (FastAPI is not needed for --help)
EXIT_INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)
FORMATS = ("auto", "jsonl", "json", "text")
_LAYOUTS_HELP = ("prompt order of the chunks: input (as given), reversed (the first chunk next to the query: for "
                 "best-first retriever output), both (two passes, averaged)")
LAYOUT_HELP = f"{_LAYOUTS_HELP}; default: the config's, else {ScorerConfig().layout}"
RANKED_LAYOUT_HELP = (f"{_LAYOUTS_HELP}; default: the config's, else {RANKED_INPUT_LAYOUT} (candidate lists come "
                      "best first)")
FORMAT_HELP = ("input format: jsonl (a JSON string or {\"text\", \"title\", \"id\"} object per line), json (an array of "
               "those), text (plain text), or auto: by file extension, else sniffed (default: auto)")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".txt": "text", ".md": "text", ".text": "text"}


class BadInputError(Exception):
    """Input the user can fix; reported as one line with exit status 2."""


@dataclass
class Input:
    """What was read: plain ``text``, or ``chunks`` (with the ``ids`` given in JSON input, else ``None``s)."""

    name: str
    format: str
    text: str | None = None
    chunks: list[Any] = field(default_factory=list)
    ids: list[Any] = field(default_factory=list)

    @property
    def has_ids(self) -> bool:
        return any(i is not None for i in self.ids)


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


def _sniff(body: str) -> str:
    """``json``, ``jsonl`` or ``text`` for input without a telling extension."""
    stripped = body.lstrip()
    if stripped.startswith("["):
        try:
            if isinstance(json.loads(body), list):
                return "json"
        except json.JSONDecodeError:
            pass
    first = next((line for line in body.splitlines() if line.strip()), "")
    try:
        item = json.loads(first)
    except json.JSONDecodeError:
        return "text"
    return "jsonl" if isinstance(item, (str, dict)) else "text"


def _item(item: Any, where: str) -> tuple[Any, Any]:
    """One JSON chunk item as ``(chunk, id)``."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        title = item.get("title")
        if title is not None and not isinstance(title, str):
            raise BadInputError(f'{where}: "title" must be a string or null, got {type(title).__name__}')
        chunk = {"text": item["text"], "title": title}
        return chunk, item.get("id")
    raise BadInputError(f'{where}: expected a JSON string or an object with a "text" string')


def read_input(path: str, fmt: str = "auto") -> Input:
    """Read ``path`` (``-``: stdin) as ``fmt``; see the module docstring for the formats and ``auto``.

    Raises:
        BadInputError: a missing file, invalid JSON or JSONL (with the line number), or no content at all.
    """
    name = "stdin" if path == "-" else path
    body = _read_text(path)
    if not body.strip():
        raise BadInputError(f"{name} is empty: nothing to score")
    resolved = fmt
    why = ""
    if fmt == "auto":
        resolved = _EXTENSIONS.get(Path(path).suffix.lower(), "") if path != "-" else ""
        if not resolved:
            resolved = _sniff(body)
            why = f" (read as {resolved.upper()} because of how it starts; pass --format text to read plain text)"
    out = Input(name=name, format=resolved)
    if resolved == "text":
        out.text = body
        return out
    if resolved == "json":
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{name}: not valid JSON ({exc.msg}, line {exc.lineno}){why}") from exc
        if not isinstance(data, list):
            raise BadInputError(f"{name}: expected a JSON array of chunks, got a JSON {type(data).__name__}")
        pairs = [_item(x, f"{name}: item {i}") for i, x in enumerate(data)]
    else:
        pairs = []
        for n, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInputError(f"{name}:{n}: not valid JSON ({exc.msg}){why}") from exc
            pairs.append(_item(item, f"{name}:{n}"))
    if not pairs:
        raise BadInputError(f"{name} holds no chunks: nothing to score")
    out.chunks = [c for c, _ in pairs]
    out.ids = [i for _, i in pairs]
    return out


def read_chunks(path: str, fmt: str = "auto") -> list[Any]:
    """The chunks of ``path`` as ``rank`` reads them (plain text: one chunk per paragraph)."""
    got = read_input(path, fmt)
    if got.text is not None:
        return _paragraphs(got)
    return got.chunks


def _paragraphs(got: Input) -> list[str]:
    chunks = [p.strip() for p in (got.text or "").split("\n\n") if p.strip()]
    if not chunks:
        raise BadInputError(f"{got.name} holds no chunks: nothing to score")
    return chunks


# ---------------------------------------------------------------------------------------------- model


def _add_model_args(p: argparse.ArgumentParser, heads: bool = True, ranked: bool = False, serve: bool = False) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--config", default=None,
                   help="config file (.yaml/.json; an adapter's file works too: its own keys are skipped); flags override")
    g.add_argument("--model", default=None, help="hub id, local folder or .gguf file (default: embedded SmolLM2-135M)")
    if heads:
        g.add_argument("--heads", default=None, help="'all', 'L-H,L-H' (0-based layer-head pairs), a shipped set name "
                       "or a YAML file")
    g.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, ... (default: auto)")
    g.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (default: auto)")
    g.add_argument("--max-context-tokens", type=int, default=None, help="tokens per forward pass (windows beyond)")
    g.add_argument("--layout", choices=LAYOUTS, default=None, help=RANKED_LAYOUT_HELP if ranked else LAYOUT_HELP)
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads for the forward passes (default: torch's)")
    if serve:
        g.add_argument("--quiet", action="store_true", help="log warnings only (no line per request)")
        g.add_argument("--progress", action="store_true", help="a progress bar on stderr for each request (default: off)")
    else:
        g.add_argument("--quiet", action="store_true", help="no progress bars on stderr")


#: Checks of the flags shared by several commands: (flag, attribute, smallest value, what it must be).
_FLAG_CHECKS = (
    ("--threads", "threads", 1, "a positive integer"),
    ("--max-context-tokens", "max_context_tokens", 128, "an integer >= 128"),
    ("--top-n", "top_n", 1, "a positive integer"),
    ("--max-tokens", "max_tokens", 1, "a positive integer"),
    ("--top-k", "top_k", 1, "a positive integer"),
    ("--prefix-cache-mb", "prefix_cache_mb", 0, "a number of MiB >= 0 (0 turns it off)"),
    ("--max-documents", "max_documents", 1, "a positive integer"),
    ("--max-body-mb", "max_body_mb", 1, "a positive integer"),
    ("--replicas", "replicas", 1, "a positive integer"),
    ("--actors", "actors", 1, "a positive integer"),
    ("--gpus-per-actor", "gpus_per_actor", 0, "a number >= 0"),
)


def check_flags(args: argparse.Namespace) -> None:
    """Refuse out-of-range numeric flags with a message that names the flag (not the config key it sets).

    Raises:
        BadInputError: the first flag out of range.
    """
    for flag, attr, least, what in _FLAG_CHECKS:
        value = getattr(args, attr, None)
        if value is not None and value < least:
            raise BadInputError(f"{flag} must be {what}, got {value}")


def scorer_from_args(args: argparse.Namespace, heads: str | None = None) -> Any:
    """The :class:`QRScorer` the shared model flags (and ``--config``) describe; ``heads`` overrides ``--heads``."""
    from .core import QRScorer

    check_flags(args)
    options: dict[str, Any] = {"show_progress": not args.quiet}
    if args.max_context_tokens is not None:
        options["max_context_tokens"] = args.max_context_tokens
    if args.layout is not None:
        options["layout"] = args.layout
    if args.threads is not None:
        options["num_threads"] = args.threads
    return QRScorer(
        args.model, heads=heads or getattr(args, "heads", None), device=args.device, dtype=args.dtype,
        config=args.config, **options,
    )


# ---------------------------------------------------------------------------------------------- commands


def _cmd_rank(args: argparse.Namespace) -> int:
    got = read_input(args.chunks, args.format)
    chunks = _paragraphs(got) if got.text is not None else got.chunks
    results = scorer_from_args(args).rank(args.query, chunks, top_n=args.top_n)
    for item in results:
        row = item.to_dict()
        if got.has_ids:
            row["id"] = got.ids[item.index]
        print(json.dumps(row, ensure_ascii=False))
    return 0


def _cmd_trim(args: argparse.Namespace) -> int:
    got = read_input(args.text, args.format)
    scorer = scorer_from_args(args)
    source: Any = got.text if got.text is not None else got.chunks
    result = scorer.trim(args.query, source, max_tokens=args.max_tokens, top_n=args.top_n, keep_order=not args.best_first)
    if args.json:
        out = result.to_dict()
        if got.has_ids:
            for chunk in out["chunks"]:
                chunk["id"] = got.ids[chunk["index"]]
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(result.text)
    print(
        f"kept {len(result.indices)} of {result.num_input_chunks} chunks, "
        f"{result.kept_tokens} of {result.input_tokens} tokens",
        file=sys.stderr,
    )
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    from .core import QRScorer
    from .core.config import QRHEAD_SCORING
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
    scorer = scorer_from_args(args, heads="all")  # detection scores every head
    # under QRHead's own scoring, as the shipped head sets were detected (no position corrections)
    scorer = QRScorer(config=scorer.config.replace(**QRHEAD_SCORING))
    ranking = score_heads(scorer, examples, metric, show_progress=not args.quiet)
    head_set = ranking.head_set(args.top_k, name=args.name or out.stem)
    head_set.to_yaml(out)
    tie = ranking.tie_warning(args.top_k)
    if tie is not None:
        print(f"qr-integrations detect: warning: {tie}", file=sys.stderr)
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


def _serve_settings(args: argparse.Namespace) -> Any:
    from .serving import API_KEY_ENV, ServeSettings

    key = args.api_key or os.environ.get(API_KEY_ENV) or None
    try:
        return ServeSettings(api_key=key, max_documents=args.max_documents, max_body_bytes=args.max_body_mb * 2**20,
                             score_normalization=args.score_normalization)
    except ValueError as exc:
        raise BadInputError(str(exc)) from exc


def serve_config_from_args(args: argparse.Namespace) -> Any:
    """The scorer config of ``serve`` and ``rank-file``: ``--config``, the model flags over it, and the
    reversed layout unless one of them names a layout (their chunks come best first)."""
    from .core.config import config_for_ranked_input

    data = config_mapping_from_args(args)
    if args.command == "serve":
        from .serving import serving_config

        return serving_config(data)
    return config_for_ranked_input(data)


def config_mapping_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config mapping of ``serve`` and ``rank-file`` as the user gave it: ``--config`` with the model
    flags over it. Keys that neither names are left out, so each route can fill them in for its input
    (candidate lists: :func:`~qr_integrations.core.config.config_for_ranked_input`; texts: the scorer's
    defaults).

    Progress bars: ``serve`` shows one per request only with ``--progress``; ``rank-file`` keeps its row bar
    alone (no per-row window bars) unless stderr is a terminal, so logs hold one bar, without cursor escapes.
    """
    from .core.config import read_config_mapping

    check_flags(args)
    data: dict[str, Any] = read_config_mapping(args.config) if args.config else {}
    for key, value in (("model", args.model), ("heads", getattr(args, "heads", None)),
                       ("max_context_tokens", args.max_context_tokens), ("layout", args.layout),
                       ("num_threads", args.threads)):
        if value is not None:
            data[key] = value
    for key, value, default in (("device", args.device, "auto"), ("dtype", args.dtype, "auto")):
        if value != default or key not in data:
            data[key] = value
    if args.command == "serve":
        data["show_progress"] = bool(args.progress)
    else:
        data["show_progress"] = not args.quiet and sys.stderr.isatty()
    if getattr(args, "prefix_cache_mb", None) is not None:
        data["prefix_cache_mb"] = args.prefix_cache_mb
    return data


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .serving import create_app
    except ImportError as exc:
        raise BadInputError(f"serve needs the serve extra: pip install 'qr-integrations[serve]' ({exc})") from exc
    config = config_mapping_from_args(args)  # each route fills in the rest for its input (create_app)
    settings = _serve_settings(args)
    if args.ray:
        try:
            from ray import serve

            from .ray import serve_app, start_local_ray
        except ImportError as exc:
            raise BadInputError(f"serve --ray needs the ray extra: pip install 'qr-integrations[ray]' ({exc})") from exc
        if args.address:
            import ray

            ray.init(address=args.address)
        else:
            start_local_ray()
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(serve_app(config, num_replicas=args.replicas, settings=settings), route_prefix="/",
                  blocking=True)
        return 0
    app = create_app(config, settings=settings)
    service = app.state.service
    print(f"qr-integrations serve: {service.model_name} on http://{args.host}:{args.port} (layout "
          f"{service.scorer.config.layout}, /trim {service.text_scorer.config.layout}; scores "
          f"{'raw' if settings.score_normalization == 'none' else settings.score_normalization}"
          f"{', API key required' if settings.api_key else ''})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
    return 0


def _cmd_rank_file(args: argparse.Namespace) -> int:
    try:
        return _rank_file(args)
    except KeyboardInterrupt:
        # Ctrl-C: one line, not a traceback; the rows written so far are kept, and a rerun resumes after them
        if args.ray:
            message = "interrupted; --ray runs start afresh: run the same command with --overwrite"
        else:
            from .rankfile import rows_written

            message = f"interrupted after {rows_written(args.output)} rows; run the same command again to resume"
        print(message, file=sys.stderr)
        return EXIT_INTERRUPTED


def _rank_file(args: argparse.Namespace) -> int:
    from .rankfile import RowError, rank_file

    config = serve_config_from_args(args)
    try:
        if args.ray:
            try:
                from .ray import rank_file_ray, start_local_ray
            except ImportError as exc:
                raise BadInputError(f"rank-file --ray needs the ray extra: pip install 'qr-integrations[ray]' "
                                    f"({exc})") from exc
            if args.address:
                import ray

                ray.init(address=args.address)
            else:
                start_local_ray()
            if Path(args.output).exists() and not args.overwrite:
                raise BadInputError(f"{args.output!r} exists; --ray runs start afresh: pass --overwrite")
            rows = rank_file_ray(args.input, args.output, config=config, top_n=args.top_n, actors=args.actors,
                                 num_gpus=args.gpus_per_actor, query_column=args.query_column,
                                 chunks_column=args.chunks_column, show_progress=not args.quiet)
            print(f"ranked {rows} rows into {args.output} on Ray ({args.actors} actors)", file=sys.stderr)
            return 0
        from .core import QRScorer

        summary = rank_file(args.input, args.output, QRScorer(config=config), top_n=args.top_n,
                            query_column=args.query_column, chunks_column=args.chunks_column,
                            overwrite=args.overwrite, show_progress=not args.quiet)
    except RowError as exc:
        raise BadInputError(str(exc)) from exc
    print(f"ranked {summary.scored} rows into {summary.output}"
          + (f" ({summary.resumed} already done)" if summary.resumed else ""), file=sys.stderr)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "rank": _cmd_rank, "trim": _cmd_trim, "detect": _cmd_detect, "serve": _cmd_serve, "rank-file": _cmd_rank_file,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands register themselves here)."""
    return _build_parsers()[0]


def unknown_flags_message(extra: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """argparse's "unrecognized arguments" message, with a "did you mean" hint for each mistyped flag among
    ``parser``'s own.

    Example:
        >>> unknown_flags_message(["--topn", "3"], build_parser()._subparsers._group_actions[0].choices["rank"])
        'unrecognized arguments: --topn 3 (did you mean --top-n?)'
    """
    import difflib

    known = sorted({o for action in parser._actions for o in action.option_strings if o.startswith("--")})
    hints = []
    for arg in extra:
        if arg.startswith("--"):
            close = difflib.get_close_matches(arg.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                hints.append(f"did you mean {close[0]}?")
    return f"unrecognized arguments: {' '.join(extra)}" + (f" ({'; '.join(hints)})" if hints else "")


def _build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's parser by name."""
    parser = argparse.ArgumentParser(
        prog="qr-integrations",
        description="Score, rank and trim context chunks with a decoder LLM's query-focused retrieval heads (QRHead).",
    )
    parser.add_argument("--version", action="version", version=f"qr-integrations {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    rank = sub.add_parser("rank", help="rank chunks for a query; prints JSON lines best first",
                          description="Rank chunks for a query. Output: one JSON object per line, best first "
                          "(rank, index, score, text, and title and id where the input has them).")
    rank.add_argument("--query", "-q", required=True, help="the question or search text")
    rank.add_argument("--chunks", "-c", required=True,
                      help="a .jsonl, .json or text file of chunks (text: one chunk per paragraph); - for stdin")
    rank.add_argument("--format", "-f", choices=FORMATS, default="auto", help=FORMAT_HELP)
    rank.add_argument("--top-n", type=int, default=None, help="print only the best N")
    _add_model_args(rank)

    trim = sub.add_parser("trim", help="trim a long text to the chunks that matter; prints the trimmed text",
                          description="Keep the chunks of a long text (split into chunks) or of a chunk list "
                          "(JSONL/JSON) that matter for the query, within a budget.")
    trim.add_argument("--query", "-q", required=True, help="the question or search text")
    trim.add_argument("--text", "-t", required=True, help="the long text file, or a .jsonl/.json chunk file (- for stdin)")
    trim.add_argument("--format", "-f", choices=FORMATS, default="auto", help=FORMAT_HELP)
    trim.add_argument("--max-tokens", type=int, default=None, help="token budget of the kept chunks")
    trim.add_argument("--top-n", type=int, default=None, help="keep at most N chunks")
    trim.add_argument("--best-first", action="store_true", help="print kept chunks best first, not in text order")
    trim.add_argument("--json", action="store_true",
                      help="print one JSON object (text, kept chunks with index, score, tokens and id, counts, all scores)")
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
    _add_model_args(detect, heads=False)

    serve = sub.add_parser(
        "serve",
        help="serve re-ranking over HTTP (TEI, Infinity, Jina and Cohere rerank APIs, /trim)",
        description="Run the rerank server: POST /rerank (TEI or Infinity), /v1/rerank (Jina, Cohere v1), "
        "/v2/rerank (Cohere v2), /trim; GET /health, /info. Candidate lists are taken to come best first (layout: "
        "reversed) unless --layout or the config says otherwise; /trim reads a text as 'trim' does (the scorer's "
        "defaults). See docs/serving.md.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    serve.add_argument("--api-key", default=None,
                       help="require 'Authorization: Bearer KEY' (default: $QR_INTEGRATIONS_API_KEY; unset: open)")
    serve.add_argument("--max-documents", type=int, default=1000, help="documents per request (default: 1000)")
    serve.add_argument("--max-body-mb", type=int, default=8, help="request body limit in MiB (default: 8)")
    serve.add_argument("--prefix-cache-mb", type=float, default=None,
                       help="MiB of prepared prefixes kept, so requests over the same documents cost only their query "
                       "(default: the config's, else 512; 0 is off)")
    serve.add_argument("--score-normalization", choices=SCORE_NORMALIZATIONS, default="none",
                       help="none: QRHead's raw scores; minmax: each request's scores scaled to [0, 1] (best 1, worst "
                       "0) for clients that expect [0, 1]; TEI's and Infinity's raw_scores: true still gets raw "
                       "scores (default: none)")
    serve.add_argument("--ray", action="store_true", help="run on Ray Serve instead of one uvicorn process")
    serve.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas, one model each (default: 1)")
    serve.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    _add_model_args(serve, ranked=True, serve=True)

    rank_file = sub.add_parser(
        "rank-file",
        help="rank every {query, chunks} row of a JSONL or Parquet file",
        description="Rank each row {id?, query, chunks} of INPUT and write it to OUTPUT with 'scores' (aligned "
        "with chunks) and 'ranking' (chunk indices, best first). In-process by default, resumable (rerun to "
        "continue); --ray spreads rows over Ray Data actors. See docs/scale-out.md.",
    )
    rank_file.add_argument("input", help="rows: .jsonl or .parquet")
    rank_file.add_argument("output", help="output: .jsonl or .parquet")
    rank_file.add_argument("--top-n", type=int, default=None, help="keep only the best N in 'ranking'")
    rank_file.add_argument("--query-column", default="query", help="field holding the query (default: query)")
    rank_file.add_argument("--chunks-column", default="chunks", help="field holding the chunks (default: chunks)")
    rank_file.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    rank_file.add_argument("--ray", action="store_true", help="run on Ray Data")
    rank_file.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    rank_file.add_argument("--actors", type=int, default=1, help="Ray Data actors, one model each (default: 1)")
    rank_file.add_argument("--gpus-per-actor", type=float, default=0, help="GPUs per Ray actor (default: 0)")
    _add_model_args(rank_file, ranked=True)
    return parser, {"rank": rank, "trim": trim, "detect": detect, "serve": serve, "rank-file": rank_file}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qr-integrations`` console script."""
    parser, commands = _build_parsers()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the subcommand's usage and a hint, not the top-level usage (exits with status 2)
        target = commands.get(args.command or "", parser)
        target.error(unknown_flags_message(extra, target))
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
