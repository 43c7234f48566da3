"""The framework packages in integrations/: built as wheels, installed into this environment, used for real.

``llama-index-postprocessor-qrhead-rerank`` (``llama_index.postprocessor.qrhead_rerank``) and ``langchain-qrhead``
(``langchain_qrhead``) are thin distributions over qr-integrations' adapters. Each wheel is built from a clean
copy of its folder without build isolation (setuptools from this environment; no network), installed with
``pip install --no-deps --no-index``, imported from site-packages and run on the embedded model.
"""

from __future__ import annotations

import copy
import doctest
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("llama_index.core")
pytest.importorskip("langchain_core")

from qr_integrations import QRScorer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
INTEGRATIONS = ROOT / "integrations"
# distribution name -> (folder under integrations/, import path, the extra of qr-integrations it requires)
PACKAGES = {
    "llama-index-postprocessor-qrhead-rerank": (
        "llama-index-postprocessor-qrhead-rerank", "llama_index.postprocessor.qrhead_rerank", "llama-index"
    ),
    "langchain-qrhead": ("langchain-qrhead", "langchain_qrhead", "langchain"),
}
PURELIB = Path(sysconfig.get_paths()["purelib"]).resolve()


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"pip {' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def _metadata(wheel: Path) -> Any:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zf.read(name).decode("utf-8"))


def _fresh_import(module: str) -> ModuleType:
    """Import ``module`` as installed now (not a copy imported before the wheels were installed)."""
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    mod = importlib.import_module(module)
    assert Path(mod.__file__).resolve().is_relative_to(PURELIB), mod.__file__  # the installed wheel, not the tree
    return mod


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One wheel per package, built from a copy of its folder (no build/ or egg-info left from a setup run)."""
    work = tmp_path_factory.mktemp("integration-wheels")
    out = work / "wheels"
    for folder, _, _ in PACKAGES.values():
        src = work / folder
        shutil.copytree(INTEGRATIONS / folder, src,
                        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
        _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", "-w", str(out), str(src))
    built = {}
    for dist in PACKAGES:
        found = sorted(out.glob(dist.replace("-", "_") + "-*.whl"))
        assert len(found) == 1, sorted(p.name for p in out.iterdir())
        built[dist] = found[0]
    return built


@pytest.fixture(scope="module")
def installed(wheels: dict[str, Path]) -> dict[str, ModuleType]:
    """Both wheels installed into this environment, and their modules imported from it."""
    _pip("install", "--no-deps", "--no-index", "--force-reinstall", "--quiet", *map(str, wheels.values()))
    return {dist: _fresh_import(module) for dist, (_, module, _) in PACKAGES.items()}


def test_the_setup_script_installs_every_package() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    folders = sorted(p.parent.name for p in INTEGRATIONS.glob("*/pyproject.toml"))
    assert folders == sorted(folder for folder, _, _ in PACKAGES.values())
    assert all(f"integrations/{folder}" in setup for folder in folders)


@pytest.mark.parametrize("dist", list(PACKAGES))
def test_wheel_is_thin_and_namespaced(wheels: dict[str, Path], dist: str) -> None:
    _, module, extra = PACKAGES[dist]
    with zipfile.ZipFile(wheels[dist]) as zf:
        files = [n for n in zf.namelist() if ".dist-info/" not in n]
    package_dir = module.replace(".", "/") + "/"
    assert files and all(n.startswith(package_dir) for n in files), files
    assert {package_dir + "__init__.py", package_dir + "py.typed"} <= set(files)
    # the namespace levels (llama_index/, llama_index/postprocessor/) are shared with other integrations
    assert not [n for n in files if n.endswith("__init__.py") and n != package_dir + "__init__.py"
                and package_dir.startswith(n.rsplit("/", 1)[0] + "/")]
    meta = _metadata(wheels[dist])
    assert meta["Name"] == dist and re.fullmatch(r"\d+\.\d+\.\d+", meta["Version"])
    assert meta["License-Expression"] == "Apache-2.0"
    requires = meta.get_all("Requires-Dist")
    assert len(requires) == 1 and requires[0].startswith(f"qr-integrations[{extra}]"), requires
    assert meta.get_payload().startswith("# ")  # the README is the long description


def test_llamahub_metadata_names_the_installed_classes(installed: dict[str, ModuleType]) -> None:
    tomllib = pytest.importorskip("tomllib")
    folder, module, _ = PACKAGES["llama-index-postprocessor-qrhead-rerank"]
    hub = tomllib.loads((INTEGRATIONS / folder / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["llamahub"]
    assert hub["import_path"] == module
    mod = installed["llama-index-postprocessor-qrhead-rerank"]
    assert hub["class_authors"] and set(hub["class_authors"]) <= set(mod.__all__)


def test_llama_index_package_reranks(installed: dict[str, ModuleType], scorer: QRScorer, questions) -> None:
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import NodeWithScore, TextNode

    from qr_integrations.llama_index import QRHeadNodePostprocessor

    mod = installed["llama-index-postprocessor-qrhead-rerank"]
    assert mod.QRScorer is QRScorer and issubclass(mod.QRHeadRerank, BaseNodePostprocessor)
    for query, chunks, gold in questions:
        nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0 - 0.1 * i) for i, t in enumerate(chunks)]
        alone = mod.QRHeadRerank(scorer=scorer, top_n=2, fusion="none").postprocess_nodes(nodes, query_str=query)
        assert alone[0].node.node_id == f"n{gold}"
    # at its defaults (fused with the retrieval scores) it is the core adapter, under another name
    fused = mod.QRHeadRerank(scorer=scorer, top_n=2).postprocess_nodes(nodes, query_str=query)
    core = QRHeadNodePostprocessor(scorer=scorer, top_n=2).postprocess_nodes(nodes, query_str=query)
    assert [(n.node.node_id, n.score) for n in fused] == [(n.node.node_id, n.score) for n in core]
    assert all(type(n.score) is float for n in fused)


def test_llama_index_package_round_trips_under_its_own_name(installed: dict[str, ModuleType]) -> None:
    rerank_cls = installed["llama-index-postprocessor-qrhead-rerank"].QRHeadRerank
    pp = rerank_cls(top_n=3, max_tokens=300, keep_order=True, keep_retrieval_score=True, fusion="rrf",
                    scorer_options={"max_context_tokens": 2048})
    data = pp.to_dict()
    assert data["class_name"] == "QRHeadRerank" == rerank_cls.class_name()
    assert (data["top_n"], data["fusion"], data["scorer_options"]) == (3, "rrf", {"max_context_tokens": 2048})
    back = rerank_cls.from_dict(data)
    assert type(back) is rerank_cls and back.to_dict() == data
    again = rerank_cls.from_json(pp.to_json())
    assert type(again) is rerank_cls and again.to_dict() == data
    assert back.scorer_config == pp.scorer_config


def test_langchain_package_compresses(installed: dict[str, ModuleType], scorer: QRScorer, questions) -> None:
    from langchain_core.documents import BaseDocumentCompressor, Document

    from qr_integrations.langchain import QRHeadDocumentCompressor

    mod = installed["langchain-qrhead"]
    assert mod.QRScorer is QRScorer and issubclass(mod.QRHeadRerank, BaseDocumentCompressor)
    for query, chunks, gold in questions:
        docs = [Document(page_content=t, metadata={"source": f"s{i}"}) for i, t in enumerate(chunks)]
        before = copy.deepcopy(docs)
        rerank = mod.QRHeadRerank(scorer=scorer, top_n=2, fusion="none")
        out = rerank.compress_documents(docs, query)
        assert docs == before  # the inputs are not changed: the kept documents are new ones
        assert len(out) == 2 and not any(o is d for o in out for d in docs)
        assert out[0].metadata["source"] == f"s{gold}" and out[0].page_content == chunks[gold]
        assert all(type(o.metadata["relevance_score"]) is float for o in out)
        assert out[0].metadata["relevance_score"] >= out[1].metadata["relevance_score"]
    # the same documents through LCEL, and from the core compressor at the package's defaults
    assert rerank.invoke({"query": query, "documents": docs}) == list(out)
    assert rerank.get_name() == "QRHeadRerank"
    fused = mod.QRHeadRerank(scorer=scorer, top_n=2).compress_documents(docs, query)
    assert fused == QRHeadDocumentCompressor(scorer=scorer, top_n=2).compress_documents(docs, query)


def test_a_fresh_interpreter_imports_the_installed_packages(
    installed: dict[str, ModuleType], wheels: dict[str, Path], tmp_path: Path
) -> None:
    """Outside the repository (no tree on the path) both import paths resolve to site-packages, and the
    LangChain package loads no langchain-classic."""
    script = (
        "import json, sys\n"
        "import langchain_qrhead\n"
        "classic = 'langchain_classic' in sys.modules\n"
        "from llama_index.postprocessor.qrhead_rerank import QRHeadRerank as L, __version__ as lv\n"
        "from langchain_qrhead import QRHeadRerank as C, __version__ as cv\n"
        "print(json.dumps({'files': [sys.modules[L.__module__].__file__, sys.modules[C.__module__].__file__],\n"
        "                  'classic': classic, 'names': [L.class_name(), C.__name__], 'versions': [lv, cv]}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(Path(f).resolve().is_relative_to(PURELIB) for f in got["files"]), got["files"]
    assert got["classic"] is False
    assert got["names"] == ["QRHeadRerank", "QRHeadRerank"]
    assert got["versions"] == [_metadata(wheels[dist])["Version"] for dist in PACKAGES]


@pytest.mark.parametrize("dist", list(PACKAGES))
def test_docstring_examples_hold(installed: dict[str, ModuleType], dist: str) -> None:
    module = installed[dist]
    impl = sys.modules[module.QRHeadRerank.__module__]
    result = doctest.testmod(impl, optionflags=doctest.ELLIPSIS, raise_on_error=False)
    assert result.attempted >= 3 and result.failed == 0, result


@pytest.mark.parametrize("dist", list(PACKAGES))
def test_readme_example_runs_and_prints_what_it_says(installed: dict[str, ModuleType], dist: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The first Python block of each package README runs as pasted; its ``# score  ...`` comment lines are
    what it prints."""
    folder, _, _ = PACKAGES[dist]
    readme = (INTEGRATIONS / folder / "README.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[0]
    expected = [m.groups() for m in re.finditer(r"^# (\d+\.\d{3})  (.+)$", code, flags=re.M)]
    assert len(expected) >= 2
    exec(compile(code, f"{folder}/README.md", "exec"), {"__name__": "__readme__"})
    printed = [line.split("  ", 1) for line in capsys.readouterr().out.strip().splitlines()]
    assert [text for _, text in printed] == [text for _, text in expected]
    assert [float(s) for s, _ in printed] == pytest.approx([float(s) for s, _ in expected], abs=2e-3)
