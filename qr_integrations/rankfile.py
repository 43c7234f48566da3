"""Rank many ``(query, chunks)`` rows from a file: the in-process path of ``qr-integrations rank-file``.

Rows are JSONL lines or Parquet rows ``{id?, query, chunks, ...}`` (``chunks``: strings, or objects with
``text`` and an optional ``title``). Each output row is the input row with two more fields: ``scores``
(floats aligned with ``chunks``) and ``ranking`` (chunk indices, best first; the best ``top_n`` when set).
:func:`qr_integrations.ray.rerank_dataset` adds the same two columns on a Ray cluster.

Output is resumable: rows are appended to a JSONL file as they are scored (to ``OUT.partial.jsonl`` when
``OUT`` is Parquet, converted at the end), and a second run over the same input skips the rows already
written.

Example:
    >>> from qr_integrations import QRScorer
    >>> row = rank_row(QRScorer(device="cpu"), {"query": "Which fruit has potassium?",
    ...                                         "chunks": ["Paris is in France.", "Bananas have potassium."]})
    >>> row["ranking"]
    [1, 0]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import QRScorer

SCORES_COLUMN = "scores"
RANKING_COLUMN = "ranking"
FILE_FORMATS = ("jsonl", "parquet")


class RowError(ValueError):
    """A row that cannot be ranked; the message names the file position and what to fix."""


def file_format(path: str | os.PathLike[str]) -> str:
    """``"jsonl"`` or ``"parquet"`` by extension (``.jsonl``/``.ndjson``/``.json``, ``.parquet``/``.pq``)."""
    suffix = Path(path).suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix in {".parquet", ".pq"}:
        return "parquet"
    raise RowError(f"{os.fspath(path)!r}: unknown file type {suffix!r}; use .jsonl or .parquet")


def check_row(row: Any, where: str, query_column: str = "query", chunks_column: str = "chunks") -> None:
    """Raise :class:`RowError` unless ``row`` has a non-empty string query and a list of chunks."""
    if not isinstance(row, Mapping):
        raise RowError(f"{where}: expected an object with {query_column!r} and {chunks_column!r}, got "
                       f"{type(row).__name__}")
    query = row.get(query_column)
    if not isinstance(query, str) or not query.strip():
        raise RowError(f"{where}: {query_column!r} must be a non-empty string, got {query!r}"[:300])
    chunks = row.get(chunks_column)
    if chunks is None or isinstance(chunks, (str, Mapping)) or not hasattr(chunks, "__len__"):
        raise RowError(f"{where}: {chunks_column!r} must be a list of chunks, got {type(chunks).__name__}")


def ranking_of(scores: list[float], top_n: int | None = None) -> list[int]:
    """Indices best first (ties keep input order), the best ``top_n`` when set: :meth:`QRScorer.rank`'s order.

    Example:
        >>> ranking_of([0.1, 0.5, 0.5, 0.2], top_n=3)
        [1, 2, 3]
    """
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return order if top_n is None else order[:top_n]


def plain(value: Any) -> Any:
    """``value`` with numpy/pyarrow containers and scalars turned into plain Python (for JSON)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return plain(value.tolist())
    return value


def rank_row(scorer: QRScorer, row: Mapping[str, Any], *, top_n: int | None = None,
             query_column: str = "query", chunks_column: str = "chunks", where: str = "row") -> dict[str, Any]:
    """``row`` with ``scores`` and ``ranking`` added (see the module docstring); ``where`` names the row in
    the error a bad row raises."""
    check_row(row, where, query_column, chunks_column)
    out = {k: plain(v) for k, v in row.items()}
    chunks = [plain(c) for c in row[chunks_column]]
    scores = scorer.score(row[query_column], chunks) if chunks else []
    out[SCORES_COLUMN] = scores
    out[RANKING_COLUMN] = ranking_of(scores, top_n)
    return out


def iter_rows(path: str | os.PathLike[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` for each row of a JSONL or Parquet file, streamed (Parquet needs pyarrow)."""
    name = os.fspath(path)
    if not Path(name).is_file():
        raise RowError(f"input file {name!r} does not exist")
    if file_format(name) == "jsonl":
        with open(name, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield f"{name}:{n}", json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RowError(f"{name}:{n}: not valid JSON ({exc.msg})") from exc
        return
    pq = _pyarrow_parquet()
    n = 0
    for batch in pq.ParquetFile(name).iter_batches(batch_size=256):
        for row in batch.to_pylist():
            yield f"{name} row {n}", row
            n += 1


def count_rows(path: str | os.PathLike[str]) -> int:
    """Rows in a JSONL (non-blank lines) or Parquet (metadata) file."""
    name = os.fspath(path)
    if file_format(name) == "jsonl":
        with open(name, encoding="utf-8") as fh:
            return sum(1 for line in fh if line.strip())
    return int(_pyarrow_parquet().ParquetFile(name).metadata.num_rows)


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise RowError("Parquet files need pyarrow: pip install pyarrow (it comes with 'qr-integrations[ray]')") from exc
    return pq


@dataclass(frozen=True)
class RankFileSummary:
    """What :func:`rank_file` did: rows in the input, rows scored now, rows found already done."""

    rows: int
    scored: int
    resumed: int
    output: str


def _done_rows(partial: Path) -> int:
    """Complete rows already in a JSONL output; a torn last line (a killed run) is cut off."""
    if not partial.exists():
        return 0
    data = partial.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(partial, "r+b") as fh:
            fh.truncate(cut)
        data = data[:cut]
    return sum(1 for line in data.splitlines() if line.strip())


def rank_file(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    scorer: QRScorer,
    *,
    top_n: int | None = None,
    query_column: str = "query",
    chunks_column: str = "chunks",
    overwrite: bool = False,
    show_progress: bool = True,
) -> RankFileSummary:
    """Rank every row of ``in_path`` into ``out_path`` (JSONL or Parquet), resuming a run that stopped.

    Rows already in the output (same position, same ``id`` where rows have one) are skipped; pass
    ``overwrite=True`` to start again.

    Example:
        >>> import json, tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "in.jsonl").write_text(json.dumps({"id": "a", "query": "Which fruit has potassium?",
        ...     "chunks": ["Paris is in France.", "Bananas have potassium."]}) + "\\n")
        >>> rank_file(d / "in.jsonl", d / "out.jsonl", QRScorer(device="cpu"), show_progress=False).scored
        1
    """
    out_name = os.fspath(out_path)
    out_format = file_format(out_name)
    file_format(in_path)  # an unknown input type fails before anything is written
    if not Path(os.fspath(in_path)).is_file():
        raise RowError(f"input file {os.fspath(in_path)!r} does not exist")
    partial = Path(out_name if out_format == "jsonl" else out_name + ".partial.jsonl")
    if overwrite:
        partial.unlink(missing_ok=True)
        if out_format == "parquet":
            Path(out_name).unlink(missing_ok=True)
    elif out_format == "parquet" and Path(out_name).exists() and not partial.exists():
        raise RowError(f"{out_name!r} already exists and holds a finished run; pass --overwrite to redo it")
    total = count_rows(in_path)
    done = _done_rows(partial)
    if done > total:
        raise RowError(f"{partial} holds {done} rows but {os.fspath(in_path)!r} only {total}: it is the output of "
                       "another input; pass --overwrite or another output path")
    last_id = _last_id(partial) if done else None
    from tqdm.auto import tqdm

    scored = 0
    with open(partial, "a", encoding="utf-8") as fh, tqdm(total=total, initial=done, unit="row", desc="rank-file",
                                                         disable=not show_progress) as bar:
        for n, (where, row) in enumerate(iter_rows(in_path)):
            if n < done:
                if n == done - 1 and isinstance(row, Mapping) and row.get("id", last_id) != last_id:
                    raise RowError(f"{where}: id {row.get('id')!r} differs from the last row already in {partial} "
                                   f"({last_id!r}): that output belongs to another input; pass --overwrite")
                continue
            out = rank_row(scorer, row, top_n=top_n, query_column=query_column, chunks_column=chunks_column,
                           where=where)
            fh.write(json.dumps(out, ensure_ascii=False) + "\n")
            fh.flush()
            scored += 1
            bar.update(1)
    if out_format == "parquet":
        _jsonl_to_parquet(partial, Path(out_name))
        partial.unlink()
    return RankFileSummary(rows=total, scored=scored, resumed=done, output=out_name)


def rows_written(out_path: str | os.PathLike[str]) -> int:
    """Complete rows a run of :func:`rank_file` into ``out_path`` has written so far (what a rerun resumes after):
    those of ``OUT.partial.jsonl`` for a Parquet output still under way, of a finished Parquet file, or of the
    JSONL output; 0 when there is none yet.

    Example:
        >>> rows_written("/nonexistent/out.jsonl")
        0
    """
    name = os.fspath(out_path)
    if file_format(name) == "jsonl":
        return _done_rows(Path(name))
    partial = Path(name + ".partial.jsonl")
    if partial.exists() or not Path(name).exists():
        return _done_rows(partial)
    return count_rows(name)


def _last_id(partial: Path) -> Any:
    with open(partial, encoding="utf-8") as fh:
        last = None
        for line in fh:
            if line.strip():
                last = line
    return json.loads(last).get("id") if last else None


def _jsonl_to_parquet(src: Path, dst: Path, batch_rows: int = 4096) -> None:
    """Stream a JSONL file into Parquet in batches (the schema is taken from the first batch)."""
    writer = None
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        with open(src, encoding="utf-8") as fh:
            batch: list[dict[str, Any]] = []
            for line in fh:
                if line.strip():
                    batch.append(json.loads(line))
                if len(batch) >= batch_rows:
                    writer = write_parquet_batch(writer, batch, tmp)
                    batch = []
            if batch or writer is None:
                writer = write_parquet_batch(writer, batch, tmp)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(dst)


def write_parquet_batch(writer: Any, rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> Any:
    """Append ``rows`` to a Parquet file through ``writer`` (``None`` first: it is opened at ``path`` with the
    schema of these rows) and return the writer; close it when done. Needs pyarrow.

    Example:
        >>> import tempfile, pathlib, pyarrow.parquet as pq
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.parquet"
        >>> w = write_parquet_batch(None, [{"id": 1, "scores": [0.5, 0.1]}], path)
        >>> w = write_parquet_batch(w, [{"id": 2, "scores": [0.2]}], path); w.close()
        >>> pq.read_table(path).column("id").to_pylist()
        [1, 2]
    """
    import pyarrow as pa

    pq = _pyarrow_parquet()
    table = pa.Table.from_pylist(rows, schema=writer.schema if writer is not None else None)
    if writer is None:
        writer = pq.ParquetWriter(path, table.schema)
    writer.write_table(table)
    return writer
