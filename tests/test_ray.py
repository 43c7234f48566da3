"""Ray: a quiet local cluster (dashboard off, no usage stats, pinned threads) running ``rerank_dataset``,
``rank-file --ray`` and the Serve app; results equal in-process scoring; torn down at the end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qr_integrations import QRScorer

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.enable_socket, pytest.mark.usefixtures("one_torch_thread")]

CONFIG = {"device": "cpu", "num_threads": 1}


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    from qr_integrations.ray import start_local_ray

    start_local_ray(num_cpus=2)
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    from tests.conftest import QUESTIONS

    return [{"id": i, "query": q, "chunks": c} for i, (q, c, _) in enumerate(QUESTIONS)]


@pytest.fixture(scope="module")
def reference() -> QRScorer:
    """What Ray runs: the ranked-input settings (candidates come best first), one thread."""
    from qr_integrations.core.config import config_for_ranked_input

    return QRScorer(config=config_for_ranked_input(CONFIG))


def test_a_ray_run_is_quiet(rows: list[dict[str, Any]], tmp_path: Path) -> None:
    """``rank-file --ray`` in its own process (its own local Ray): a successful run prints its summary line alone,
    not Ray Data's INFO and progress lines, nor Ray's error-level line about restartable actors."""
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "qr_integrations.cli", "rank-file", str(src), str(tmp_path / "out.jsonl"),
                           "--ray", "--device", "cpu", "--threads", "1"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"ranked 2 rows into {tmp_path / 'out.jsonl'} on Ray (1 actors)"], done.stderr[-3000:]


def test_rerank_dataset_equals_in_process(cluster: None, rows: list[dict[str, Any]], reference: QRScorer) -> None:
    from qr_integrations.ray import rerank_dataset

    ds = ray.data.from_items(rows)
    out = sorted(rerank_dataset(ds, config=CONFIG, top_n=2, batch_size=2).take_all(), key=lambda r: r["id"])
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    for row, got in zip(rows, out, strict=True):
        want = reference.rank(row["query"], row["chunks"])
        assert list(got["scores"]) == pytest.approx(reference.score(row["query"], row["chunks"]), rel=1e-9)
        assert list(got["ranking"]) == want.indices[:2]


def test_rerank_dataset_checks_its_arguments(cluster: None, rows: list[dict[str, Any]]) -> None:
    from qr_integrations.ray import rerank_dataset

    ds = ray.data.from_items(rows)
    with pytest.raises(ValueError, match="no column"):
        rerank_dataset(ds, query_column="question")
    with pytest.raises(ValueError, match="actors"):
        rerank_dataset(ds, actors=0)


def test_rank_file_on_ray_equals_in_process(cluster: None, rows: list[dict[str, Any]], tmp_path: Path) -> None:
    from qr_integrations.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    flags = ["--device", "cpu", "--threads", "1", "--quiet"]
    assert main(["rank-file", str(src), str(tmp_path / "local.jsonl"), *flags]) == 0
    assert main(["rank-file", str(src), str(tmp_path / "ray.jsonl"), "--ray", *flags]) == 0
    local = [json.loads(x) for x in (tmp_path / "local.jsonl").read_text().splitlines()]
    on_ray = [json.loads(x) for x in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert [r["id"] for r in on_ray] == [r["id"] for r in local]  # input order kept
    for a, b in zip(local, on_ray, strict=True):
        assert b["ranking"] == a["ranking"]
        assert b["scores"] == pytest.approx(a["scores"], rel=1e-9)


def test_serve_app_answers_like_the_scorer(cluster: None, reference: QRScorer) -> None:
    from ray import serve

    from qr_integrations.ray import serve_app
    from qr_integrations.serving import ServeSettings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(serve_app(CONFIG, settings=ServeSettings(api_key="k")), name="qr", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    docs = ["Paris is in France.", "Bananas are rich in potassium.", "The sky is blue."]
    r = httpx.post(f"{url}/v2/rerank", json={"query": "Which fruit has potassium?", "documents": docs},
                   headers={"Authorization": "Bearer k"}, timeout=120)
    want = reference.rank("Which fruit has potassium?", docs)
    assert [x["index"] for x in r.json()["results"]] == want.indices
    assert [x["relevance_score"] for x in r.json()["results"]] == pytest.approx([x.score for x in want], rel=1e-9)
    assert httpx.post(f"{url}/v2/rerank", json={"query": "q", "documents": docs}, timeout=60).status_code == 401
    bad = httpx.post(f"{url}/v2/rerank", content=b"{", headers={"Authorization": "Bearer k"}, timeout=60)
    assert bad.status_code == 400
    assert httpx.get(f"{url}/health", timeout=60).json() == {"status": "ok"}
    serve.delete("qr")
