"""Checkpoint reading: the only file that knows checkpoint key names and file layouts.

A checkpoint is a Hugging Face Whisper directory: config.json, generation_config.json (optional),
tokenizer.json, and model.safetensors or model.safetensors.index.json + shards.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import ModelLoadError
from .config import ModelConfig
from .whisper import Whisper

PREFIX = "model."
TIED = "proj_out.weight"  # the output projection is the token embedding


def read_json(path: Path, required: bool = True) -> dict | None:
    if not path.is_file():
        if required:
            raise ModelLoadError(f"{path.parent}: no {path.name}; a Whisper checkpoint directory needs "
                                 "config.json, tokenizer.json and model.safetensors (HF layout)")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e})") from None


def read_config(ckpt: Path) -> ModelConfig:
    return ModelConfig.from_hf(read_json(ckpt / "config.json"), read_json(ckpt / "generation_config.json", False))


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from None


def read_state_dict(ckpt: Path) -> dict[str, torch.Tensor]:
    """All tensors of a single-file or sharded safetensors checkpoint, keys as stored."""
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ModelLoadError(f"{index}: no 'weight_map' object")
        sd: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            if not (ckpt / shard).is_file():
                raise ModelLoadError(f"{index} names the shard {shard!r}, which is missing from {ckpt}")
            sd.update(_load_safetensors(ckpt / shard))
        return sd
    single = ckpt / "model.safetensors"
    if not single.is_file():
        raise ModelLoadError(f"{ckpt}: no model.safetensors or model.safetensors.index.json "
                             "(convert .pt / CTranslate2 models with `python -m weights_tools`)")
    return _load_safetensors(single)


def to_model_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF keys -> Whisper module keys: strip `model.`, drop the tied output projection."""
    out = {}
    for k, v in sd.items():
        if k == TIED:
            continue
        out[k.removeprefix(PREFIX)] = v
    return out


def check_keys(model: torch.nn.Module, sd: dict[str, torch.Tensor], where: Path) -> None:
    expected = dict(model.state_dict())
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(f"{where}: keys do not match a Whisper model of this config.json: "
                             f"missing {[PREFIX + k for k in missing[:5]]}{'…' if len(missing) > 5 else ''} "
                             f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
    for k, t in expected.items():
        if tuple(sd[k].shape) != tuple(t.shape):
            raise ModelLoadError(f"{where}: tensor {PREFIX + k} has shape {tuple(sd[k].shape)}, "
                                 f"but config.json implies {tuple(t.shape)}")
        if not sd[k].is_floating_point():
            raise ModelLoadError(f"{where}: tensor {PREFIX + k} has dtype {sd[k].dtype}; expected a float type")


def load_whisper(ckpt: str | os.PathLike, *, device: torch.device, dtype: torch.dtype) -> Whisper:
    """Build on the meta device, check every key and shape, then assign the checkpoint's tensors."""
    ckpt = Path(ckpt)
    config = read_config(ckpt)
    with torch.device("meta"):
        model = Whisper(config)
    sd = to_model_keys(read_state_dict(ckpt))
    check_keys(model, sd, ckpt)
    sd = {k: v.to(device=device, dtype=dtype) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval().requires_grad_(False)
