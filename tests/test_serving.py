"""The rerank server: real client packages (LlamaIndex TEI, Cohere and Jina postprocessors, langchain-cohere,
the cohere SDK) pointed at a real ``qr-integrations serve`` on 127.0.0.1; their rankings and scores equal
``QRScorer``'s. Bad requests get a 4xx with a JSON message and the server keeps serving; auth; concurrency."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from qr_integrations import QRScorer
from qr_integrations.cli import main
from qr_integrations.core.config import config_for_ranked_input

pytestmark = [pytest.mark.allow_hosts(["127.0.0.1"]), pytest.mark.usefixtures("one_torch_thread")]

KEY = "test-key-123"
QUERY = "Which fruit is rich in potassium?"
DOCS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
    "Honey bees communicate the location of flowers with a waggle dance.",
    "Bananas are an excellent source of potassium and vitamin B6.",
    "Python is a programming language created by Guido van Rossum and released in 1991.",
]
GOLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(log: Path, *flags: str) -> Iterator[str]:
    """A real ``qr-integrations serve`` process on a free port, its stdout and stderr in ``log``."""
    port = free_port()
    cmd = [sys.executable, "-m", "qr_integrations.cli", "serve", "--port", str(port), "--device", "cpu",
           "--threads", "1", *flags]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start: {log.read_text()}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve") / "serve.log"


@pytest.fixture(scope="module")
def server(server_log: Path) -> Iterator[str]:
    """``qr-integrations serve`` at its defaults but for an API key, one thread, at most 20 documents, 1 MiB bodies."""
    yield from start_server(server_log, "--api-key", KEY, "--max-documents", "20", "--max-body-mb", "1")


@pytest.fixture(scope="module")
def minmax_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same server, open, with ``--score-normalization minmax``."""
    yield from start_server(tmp_path_factory.mktemp("serve") / "minmax.log", "--quiet", "--score-normalization", "minmax")


@pytest.fixture(scope="module")
def reference() -> QRScorer:
    """What the server runs for candidate lists: the embedded model, the ranked-input settings (the reversed
    layout: candidates come best first), 1 thread."""
    return QRScorer(config=config_for_ranked_input({"device": "cpu", "num_threads": 1}))


@pytest.fixture(scope="module")
def text_reference() -> QRScorer:
    """What the server runs for ``/trim``: the scorer's own defaults, as ``qr-integrations trim``, 1 thread."""
    return QRScorer(device="cpu", num_threads=1)


@pytest.fixture(scope="module")
def expected(reference: QRScorer) -> list[tuple[int, float]]:
    return [(item.index, item.score) for item in reference.rank(QUERY, DOCS)]


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-6, abs=1e-9)


def nodes() -> list[Any]:
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0 - i / 10) for i, t in enumerate(DOCS)]


def node_ranking(out: list[Any]) -> list[tuple[int, float]]:
    return [(int(n.node.node_id[1:]), float(n.score)) for n in out]


# ------------------------------------------------------------------------------------------ real clients


def test_llama_index_tei_postprocessor(server: str, expected: list[tuple[int, float]]) -> None:
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    rerank = TextEmbeddingInference(base_url=server, top_n=4, auth_token=f"Bearer {KEY}")
    out = rerank.postprocess_nodes(nodes(), query_str=QUERY)
    same(node_ranking(out), expected)


def test_llama_index_cohere_postprocessor(server: str, expected: list[tuple[int, float]]) -> None:
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    rerank = CohereRerank(api_key=KEY, base_url=server, top_n=3, model="qrhead")
    out = rerank.postprocess_nodes(nodes(), query_str=QUERY)
    same(node_ranking(out), expected[:3])


def test_llama_index_jina_postprocessor(server: str, expected: list[tuple[int, float]]) -> None:
    from llama_index.postprocessor.jinaai_rerank import JinaRerank

    rerank = JinaRerank(api_key=KEY, base_url=f"{server}/v1", top_n=2, model="qrhead")
    out = rerank.postprocess_nodes(nodes(), query_str=QUERY)
    same(node_ranking(out), expected[:2])


def test_langchain_cohere_rerank(server: str, expected: list[tuple[int, float]]) -> None:
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    rerank = CohereRerank(cohere_api_key=KEY, base_url=server, model="qrhead", top_n=3)
    out = rerank.compress_documents([Document(page_content=t, metadata={"i": i}) for i, t in enumerate(DOCS)], QUERY)
    same([(d.metadata["i"], d.metadata["relevance_score"]) for d in out], expected[:3])


def test_cohere_sdk_v1_and_v2(server: str, expected: list[tuple[int, float]]) -> None:
    import cohere

    v1 = cohere.Client(api_key=KEY, base_url=server).rerank(query=QUERY, documents=DOCS, return_documents=True,
                                                              model="qrhead")
    same([(r.index, r.relevance_score) for r in v1.results], expected)
    assert [r.document.text for r in v1.results] == [DOCS[i] for i, _ in expected]
    v2 = cohere.ClientV2(api_key=KEY, base_url=server).rerank(query=QUERY, documents=DOCS, top_n=1, model="qrhead")
    same([(r.index, r.relevance_score) for r in v2.results], expected[:1])


def test_infinity_and_tei_wire_formats(server: str, expected: list[tuple[int, float]]) -> None:
    inf = httpx.post(f"{server}/rerank", headers=auth(), json={
        "query": QUERY, "documents": DOCS, "return_documents": True, "raw_scores": False, "model": "qrhead",
        "top_n": None, "some_future_field": {"x": 1}}).json()
    assert inf["model"] == "smollm2-135m-instruct"
    assert inf["usage"]["prompt_tokens"] == inf["usage"]["total_tokens"] > 40
    same([(r["index"], r["relevance_score"]) for r in inf["results"]], expected)
    assert inf["results"][0]["document"] == DOCS[GOLD]  # Infinity: the document is a string
    tei = httpx.post(f"{server}/rerank", headers=auth(), json={"query": QUERY, "texts": DOCS, "return_text": True,
                                                                "truncate": True, "raw_scores": True}).json()
    same([(r["index"], r["score"]) for r in tei], expected)
    assert tei[0]["text"] == DOCS[GOLD]
    bare = httpx.post(f"{server}/v1/rerank", headers=auth(), json={"query": QUERY, "documents": DOCS,
                                                                    "return_documents": False}).json()
    assert all("document" not in r for r in bare["results"])


def test_trim_endpoint_equals_scorer(server: str, text_reference: QRScorer) -> None:
    text = "\n\n".join(DOCS)
    got = httpx.post(f"{server}/trim", headers=auth(), json={"query": QUERY, "text": text, "top_n": 1}).json()
    want = text_reference.trim(QUERY, text, top_n=1).to_dict()
    assert got["text"] == want["text"] == DOCS[GOLD]
    assert got["all_scores"] == pytest.approx(want["all_scores"], rel=1e-6)
    chunks = httpx.post(f"{server}/trim", headers=auth(), json={
        "query": QUERY, "chunks": [{"text": DOCS[0], "title": None}, DOCS[GOLD]], "max_tokens": 20}).json()
    assert [c["index"] for c in chunks["chunks"]] == [1]


def test_trim_endpoint_and_trim_command_score_a_text_alike(server: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A text has no retriever order: ``POST /trim`` and ``qr-integrations trim`` read it in one layout (the
    scorer's default) and give the same JSON."""
    text = "\n\n".join([*DOCS[::-1], "Apples are a fruit too, with some potassium."])
    (tmp_path / "report.txt").write_text(text)
    assert main(["trim", "-q", QUERY, "-t", str(tmp_path / "report.txt"), "--top-n", "2", "--json", "--device", "cpu",
                 "--threads", "1", "--quiet"]) == 0
    cli = json.loads(capsys.readouterr().out)
    got = httpx.post(f"{server}/trim", headers=auth(), json={"query": QUERY, "text": text, "top_n": 2}).json()
    assert got["all_scores"] == pytest.approx(cli["all_scores"], rel=1e-6, abs=1e-9)
    assert [c["index"] for c in got["chunks"]] == [c["index"] for c in cli["chunks"]]
    assert got["text"] == cli["text"]


def test_same_documents_reuse_the_prepared_prefix(server: str, reference: QRScorer) -> None:
    before = httpx.get(f"{server}/info", headers=auth()).json()["prefix_cache"]
    assert before["max_mb"] == 512
    docs = [d + " (reuse)" for d in DOCS]
    for q in ("Which fruit has potassium?", "Who created Python?", "Where do bees dance?"):
        r = httpx.post(f"{server}/v2/rerank", headers=auth(), json={"query": q, "documents": docs}).json()
        want = [(x.index, x.score) for x in reference.rank(q, docs)]
        same([(x["index"], x["relevance_score"]) for x in r["results"]], want)
    after = httpx.get(f"{server}/info", headers=auth()).json()["prefix_cache"]
    assert after["misses"] - before["misses"] == 1 and after["hits"] - before["hits"] == 2
    assert after["entries"] >= 1 and after["used_mb"] > 0


def test_health_and_info(server: str) -> None:
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    info = httpx.get(f"{server}/info", headers=auth()).json()
    assert info["model"] == "smollm2-135m-instruct" and info["layout"] == "reversed"
    assert info["trim_layout"] == QRScorer().config.layout and info["score_normalization"] == "none"
    assert info["heads"]["name"] == "smollm2-135m-instruct-mix" and info["window_tokens"] == 8192
    assert info["max_documents"] == 20 and info["auth"] is True


# ------------------------------------------------------------------------------------------ errors and access


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/v2/rerank", b"{not json", 400, "not valid JSON"),
        ("/v2/rerank", b"", 400, "empty request body"),
        ("/v2/rerank", b"[1, 2]", 400, "JSON object"),
        ("/v2/rerank", {"documents": DOCS}, 400, '"query"'),
        ("/v2/rerank", {"query": QUERY, "documents": "one string"}, 400, '"documents" must be an array'),
        ("/v2/rerank", {"query": QUERY, "documents": [{"title": "no text"}]}, 400, '"documents"[0]'),
        ("/v2/rerank", {"query": QUERY, "documents": DOCS, "top_n": -1}, 400, '"top_n"'),
        ("/v1/rerank", {"query": QUERY, "documents": DOCS, "return_documents": "yes"}, 400, '"return_documents"'),
        ("/rerank", {"query": QUERY}, 400, '"texts"'),
        ("/rerank", {"query": QUERY, "texts": [None]}, 400, '"texts"[0]'),
        ("/rerank", {"query": QUERY, "texts": DOCS, "documents": DOCS}, 400, "not both"),
        ("/rerank", {"query": QUERY, "texts": [None]}, 400, '"texts"[0] must be a string, got null'),
        ("/v2/rerank", {"query": None, "documents": DOCS}, 400, '"query" must be a non-empty string, got null'),
        ("/v2/rerank", {"query": True, "documents": DOCS}, 400, "got true"),
        ("/v2/rerank", {"query": QUERY, "documents": DOCS, "top_n": True}, 400, '"top_n" must be a positive integer '
         "or null, got true"),
        ("/v1/rerank", {"query": QUERY, "documents": [{"title": "no text"}]}, 400,
         '"documents"[0] must be a string or an object with a "text" string, got an object without a "text" string'),
        ("/v2/rerank", {"query": QUERY, "documents": {"a": "b"}}, 400, '"documents" must be an array of strings, got an '
         "object"),
        ("/trim", {"query": QUERY, "text": False}, 400, '"text" must be a string, got false'),
        ("/trim", {"query": QUERY, "chunks": [{"text": "a", "title": 3}]}, 400, 'whose "title" is 3'),
        ("/v2/rerank", b"[1, 2]", 400, "must be a JSON object, got an array"),
        ("/v2/rerank", {"query": QUERY, "documents": ["x"] * 21}, 413, "limit of 20"),
        ("/v2/rerank", {"query": QUERY, "documents": ["x" * 600_000, "y" * 600_000]}, 413, "over the limit"),
        ("/trim", {"query": QUERY}, 400, 'exactly one of "text"'),
        ("/trim", {"query": QUERY, "text": "\n\n".join(" ".join(["word"] * 240) for _ in range(25))}, 413,
         "after splitting the text"),
        ("/trim", {"query": QUERY, "chunks": [3]}, 400, '"chunks"[0]'),
        ("/nowhere", {"query": QUERY}, 404, "Not Found"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_why(server: str, path: str, body: Any, status: int, says: str) -> None:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(f"{server}{path}", headers=auth(), timeout=60, **kwargs)
    assert r.status_code == status, r.text
    assert says in r.json()["message"]
    for python_speak in ("NoneType", "None", "True", "False", "dict", "bool", "list"):  # JSON's words, not Python's
        assert python_speak not in r.json()["message"]


def test_server_keeps_serving_after_bad_requests(server: str, expected: list[tuple[int, float]]) -> None:
    for body in (b"\xff\xfe", b"{", b'{"query": 1}'):
        assert httpx.post(f"{server}/v2/rerank", headers=auth(), content=body).status_code == 400
    r = httpx.post(f"{server}/v2/rerank", headers=auth(), json={"query": QUERY, "documents": DOCS})
    same([(x["index"], x["relevance_score"]) for x in r.json()["results"]], expected)


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Bearer {KEY}x", "Basic abc"])
def test_wrong_or_missing_key_gets_401(server: str, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = httpx.post(f"{server}/v2/rerank", headers=headers, json={"query": QUERY, "documents": DOCS})
    assert r.status_code == 401 and "API key" in r.json()["message"]
    assert httpx.get(f"{server}/info", headers=headers).status_code == 401


def test_bare_key_accepted_as_the_tei_client_sends_it(server: str) -> None:
    r = httpx.post(f"{server}/v2/rerank", headers={"Authorization": KEY}, json={"query": QUERY, "documents": DOCS})
    assert r.status_code == 200


def test_concurrent_requests_get_their_own_answers(server: str, reference: QRScorer) -> None:
    jobs = [(f"question {i}: {q}", DOCS[i % 4:] + DOCS[: i % 4]) for i, q in enumerate(
        ["Which fruit has potassium?", "Who made Python?", "Where is the Eiffel Tower?", "How do bees talk?"] * 2)]

    def call(job: tuple[str, list[str]]) -> list[tuple[int, float]]:
        q, docs = job
        r = httpx.post(f"{server}/v2/rerank", headers=auth(), json={"query": q, "documents": docs}, timeout=120)
        return [(x["index"], x["relevance_score"]) for x in r.json()["results"]]

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(call, jobs))
    for (q, docs), answer in zip(jobs, got, strict=True):
        same(answer, [(x.index, x.score) for x in reference.rank(q, docs)])


def test_the_server_is_quiet_by_default(server: str, server_log: Path) -> None:
    r = httpx.post(f"{server}/v2/rerank", headers=auth(), json={"query": "Where do bees dance?", "documents": DOCS})
    assert r.status_code == 200
    log = server_log.read_text()
    assert "qr-integrations serve:" in log and "POST /v2/rerank" in log  # its start line and uvicorn's access log
    assert "it/s" not in log and "tok/s" not in log and "scoring" not in log  # no progress bar per request


def test_serve_shows_progress_bars_only_when_asked() -> None:
    from qr_integrations.cli import build_parser, config_mapping_from_args

    assert config_mapping_from_args(build_parser().parse_args(["serve"]))["show_progress"] is False
    assert config_mapping_from_args(build_parser().parse_args(["serve", "--progress"]))["show_progress"] is True


# ------------------------------------------------------------------------------------------ scores in [0, 1]


def test_minmax_scores_for_clients_that_expect_the_unit_range(minmax_server: str, reference: QRScorer) -> None:
    """``--score-normalization minmax``: TEI's, Cohere's and Jina's clients get scores in [0, 1] (the best 1.0,
    the worst 0.0) in the raw scores' order; TEI's ``raw_scores: true`` still gets the raw floats."""
    import cohere
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    raw = [(x.index, x.score) for x in reference.rank(QUERY, DOCS)]
    lo, hi = raw[-1][1], raw[0][1]
    scaled = [(i, (s - lo) / (hi - lo)) for i, s in raw]
    tei = TextEmbeddingInference(base_url=minmax_server, top_n=4).postprocess_nodes(nodes(), query_str=QUERY)
    same(node_ranking(tei), scaled)
    assert tei[0].score == 1.0 and tei[-1].score == 0.0
    v2 = cohere.ClientV2(api_key="-", base_url=minmax_server).rerank(query=QUERY, documents=DOCS, top_n=2, model="q")
    same([(r.index, r.relevance_score) for r in v2.results], scaled[:2])  # normalised over all, then cut
    v1 = cohere.Client(api_key="-", base_url=minmax_server).rerank(query=QUERY, documents=DOCS, model="q")
    same([(r.index, r.relevance_score) for r in v1.results], scaled)
    raw_tei = httpx.post(f"{minmax_server}/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    same([(r["index"], r["score"]) for r in raw_tei], raw)
    raw_inf = httpx.post(f"{minmax_server}/rerank", json={"query": QUERY, "documents": DOCS, "raw_scores": True}).json()
    same([(r["index"], r["relevance_score"]) for r in raw_inf["results"]], raw)
    one = httpx.post(f"{minmax_server}/v2/rerank", json={"query": QUERY, "documents": DOCS[:1]}).json()
    assert one["results"][0]["relevance_score"] == 1.0
    assert httpx.get(f"{minmax_server}/info").json()["score_normalization"] == "minmax"


# ------------------------------------------------------------------------------------------ in process


def test_open_server_accepts_any_token_and_serves_a_given_scorer(scorer: QRScorer) -> None:
    from fastapi.testclient import TestClient

    from qr_integrations.serving import ServeSettings, create_app

    app = create_app(scorer=scorer, settings=ServeSettings())
    client = TestClient(app)
    for headers in ({}, {"Authorization": "Bearer anything"}):
        r = client.post("/v2/rerank", headers=headers, json={"query": QUERY, "documents": DOCS, "top_n": 1})
        assert r.status_code == 200 and r.json()["results"][0]["index"] == GOLD
    assert app.state.service.scorer is scorer
    empty = client.post("/v2/rerank", json={"query": QUERY, "documents": []}).json()
    assert empty["results"] == []


def test_max_tokens_per_doc_cuts_documents_first(scorer: QRScorer) -> None:
    from qr_integrations.serving import RerankService

    service = RerankService(scorer)
    docs = ["Bananas are rich in potassium. " + "filler words here " * 30, "Paris is in France."]
    got = service.cohere_v2({"query": QUERY, "documents": docs, "max_tokens_per_doc": 6})["results"]
    cut = [docs[0][: len("Bananas are rich in potassium")], docs[1]]
    want = scorer.rank(QUERY, cut)
    assert [(r["index"], r["relevance_score"]) for r in got] == [(x.index, x.score) for x in want]


def test_serving_layout_default_and_env_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from qr_integrations import ScorerConfig
    from qr_integrations.cli import build_parser, serve_config_from_args
    from qr_integrations.serving import serving_config, text_serving_config

    assert serving_config(None).layout == "reversed"
    assert serving_config({"layout": "input"}).layout == "input"
    # /trim: a text in no retriever's order takes the scorer's defaults, unless the config names them
    assert text_serving_config(None) == ScorerConfig(prefix_cache_mb=512)
    assert text_serving_config({"layout": "both"}).layout == "both"
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("layout: both\nheads: all\ntop_n: 3\n")
    args = build_parser().parse_args(["serve", "--config", str(cfg_file), "--threads", "1"])
    cfg = serve_config_from_args(args)
    assert (cfg.layout, cfg.heads, cfg.num_threads, cfg.prefix_cache_mb) == ("both", "all", 1, 512)
    args = build_parser().parse_args(["serve", "--prefix-cache-mb", "0"])
    assert serve_config_from_args(args).prefix_cache_mb == 0
    args = build_parser().parse_args(["serve", "--config", str(cfg_file), "--layout", "input"])
    assert serve_config_from_args(args).layout == "input"
    assert serve_config_from_args(build_parser().parse_args(["serve"])).layout == "reversed"


def test_settings_are_checked() -> None:
    from qr_integrations.serving import ServeSettings

    for bad in ({"max_documents": 0}, {"max_body_bytes": 10}, {"api_key": " "}, {"score_normalization": "sigmoid"}):
        with pytest.raises(ValueError):
            ServeSettings(**bad)


def test_api_key_from_the_environment(scorer: QRScorer, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from qr_integrations.serving import API_KEY_ENV, create_app

    monkeypatch.setenv(API_KEY_ENV, "env-key")
    client = TestClient(create_app(scorer=scorer))
    assert client.get("/info").status_code == 401
    assert client.get("/info", headers={"Authorization": "Bearer env-key"}).json()["auth"] is True
