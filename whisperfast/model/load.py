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
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e}); re-download or re-convert the checkpoint") from None
    if not isinstance(d, dict):
        raise ModelLoadError(f"{path}: expected a JSON object {{...}}, found a {type(d).__name__}")
    return d


def read_config(ckpt: Path) -> ModelConfig:
    """The checkpoint's ModelConfig; a config that is not Whisper's, or has impossible sizes, raises
    ModelLoadError naming config.json."""
    path = ckpt / "config.json"
    config, generation = read_json(path), read_json(ckpt / "generation_config.json", False)
    try:
        c = ModelConfig.from_hf(config, generation)
    except ModelLoadError as e:
        raise ModelLoadError(f"{path}: {str(e).removeprefix('config.json ')}") from None
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{path} or generation_config.json: a value has the wrong type ({e}); "
                             "compare it with the config of a Whisper checkpoint") from None
    for name in ("n_mels", "n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
                 "n_audio_ffn", "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_text_ffn"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ModelLoadError(f"{path}: {name} = {v!r}, but every size of a Whisper model is a positive integer")
    for state, heads in (("n_audio_state", "n_audio_head"), ("n_text_state", "n_text_head")):
        if getattr(c, state) % getattr(c, heads):
            raise ModelLoadError(f"{path}: {state} = {getattr(c, state)} is not a multiple of {heads} = "
                                 f"{getattr(c, heads)}; the attention heads must split the width evenly")
    return c


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}; "
                             "re-download or re-convert it") from None


def read_state_dict(ckpt: Path) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    """All tensors of a single-file or sharded safetensors checkpoint, keys as stored -> (tensors, file of each)."""
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ModelLoadError(f"{index}: no 'weight_map' object of tensor name -> shard file name")
        sd: dict[str, torch.Tensor] = {}
        files: dict[str, Path] = {}
        for shard in sorted(set(weight_map.values())):
            if not (ckpt / shard).is_file():
                raise ModelLoadError(f"{index} names the shard {shard!r}, which is missing from {ckpt}; "
                                     "download every shard the index lists")
            part = _load_safetensors(ckpt / shard)
            sd.update(part)
            files.update(dict.fromkeys(part, ckpt / shard))
        return sd, files
    single = ckpt / "model.safetensors"
    if not single.is_file():
        raise ModelLoadError(f"{ckpt}: no model.safetensors or model.safetensors.index.json "
                             "(convert .pt / CTranslate2 models with `python -m weights_tools`)")
    sd = _load_safetensors(single)
    return sd, dict.fromkeys(sd, single)


def to_model_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF keys -> Whisper module keys: strip `model.`, drop the tied output projection."""
    out = {}
    for k, v in sd.items():
        if k == TIED:
            continue
        out[k.removeprefix(PREFIX)] = v
    return out


def check_keys(model: torch.nn.Module, sd: dict[str, torch.Tensor], files: dict[str, Path], config: Path) -> None:
    """Raise ModelLoadError naming the file and key of the first tensor that is missing, unexpected, of the
    wrong shape or not floating point. `sd`: module keys; `files`: stored key -> the file holding it."""
    expected = dict(model.state_dict())
    stored = {k: PREFIX + k if PREFIX + k in files else k for k in sd}  # module key -> key as stored

    def where(keys) -> str:
        return ", ".join(sorted({str(files[stored[k]]) for k in keys})) if keys else str(next(iter(files.values())))

    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(
            f"{where(unexpected)}: the tensors do not match the Whisper model that {config} describes: "
            f"missing {[PREFIX + k for k in missing[:5]]}{'…' if len(missing) > 5 else ''}, "
            f"unexpected {[stored[k] for k in unexpected[:5]]}{'…' if len(unexpected) > 5 else ''}; "
            "the weights and config.json must come from the same model (re-download or re-convert it)")
    for k, t in expected.items():
        if tuple(sd[k].shape) != tuple(t.shape):
            raise ModelLoadError(f"{where([k])}: tensor {stored[k]} has shape {tuple(sd[k].shape)}, but {config} "
                                 f"implies {tuple(t.shape)}; the weights and config.json are from different models")
        if not sd[k].is_floating_point():
            raise ModelLoadError(f"{where([k])}: tensor {stored[k]} has dtype {sd[k].dtype}; expected a float "
                                 "type (float32/float16/bfloat16): quantised checkpoints need converting first")


def load_whisper(ckpt: str | os.PathLike, *, device: torch.device, dtype: torch.dtype, int8: bool = False) -> Whisper:
    """Build on the meta device, check every key and shape, then assign the checkpoint's tensors.
    `int8`: the decoder's per-token matrices become weight-only int8 (`dtype` is then the activations')."""
    ckpt = Path(ckpt)
    config = read_config(ckpt)
    with torch.device("meta"):
        model = Whisper(config)
    sd, files = read_state_dict(ckpt)
    sd = to_model_keys(sd)
    check_keys(model, sd, files, ckpt / "config.json")
    keep = model.int8_weights() if int8 else set()  # quantised from the stored dtype, never made float32
    sd = {k: v.to(device=device, dtype=None if k in keep else dtype) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    del sd  # the float matrices that become int8 are freed as they are replaced
    model.prepare_decoder(column_major=device.type == "cpu", int8=int8,
                          onednn=device.type == "cpu" and dtype == torch.float32)
    return model.eval().requires_grad_(False)
