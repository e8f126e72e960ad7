"""The Hugging Face Whisper directory layout: configs, expected parameter names, safetensors I/O.

Nothing here imports transformers or whisperfast; the expected key set is computed from the config.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import CheckpointError, SourceNotFoundError
from .tokenizer_json import SpecialTokens, special_tokens, tokenizer_config

DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
SAFE_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
TIED_KEY = "proj_out.weight"  # tied to model.decoder.embed_tokens.weight; never written


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name]
    except KeyError:
        raise CheckpointError(f"unknown dtype {name!r}; accepted: {', '.join(DTYPES)}") from None


def dtype_name(dt: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}.get(dt, str(dt).replace("torch.", ""))


@dataclass(frozen=True)
class Dims:
    """The shape numbers of a Whisper model (what a Hugging Face config.json fixes)."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    num_mel_bins: int
    vocab_size: int
    max_source_positions: int = 1500
    max_target_positions: int = 448

    @classmethod
    def from_config(cls, cfg: dict) -> "Dims":
        try:
            return cls(
                d_model=int(cfg["d_model"]),
                encoder_layers=int(cfg["encoder_layers"]),
                decoder_layers=int(cfg["decoder_layers"]),
                encoder_heads=int(cfg["encoder_attention_heads"]),
                decoder_heads=int(cfg["decoder_attention_heads"]),
                encoder_ffn_dim=int(cfg["encoder_ffn_dim"]),
                decoder_ffn_dim=int(cfg["decoder_ffn_dim"]),
                num_mel_bins=int(cfg["num_mel_bins"]),
                vocab_size=int(cfg["vocab_size"]),
                max_source_positions=int(cfg.get("max_source_positions", 1500)),
                max_target_positions=int(cfg.get("max_target_positions", 448)),
            )
        except KeyError as e:
            raise CheckpointError(f"config.json lacks {e.args[0]!r}; is it a Whisper config?") from None

    def validate(self) -> None:
        for name, heads in (("encoder", self.encoder_heads), ("decoder", self.decoder_heads)):
            if heads <= 0 or self.d_model % heads:
                raise CheckpointError(f"d_model {self.d_model} is not divisible by {name} heads {heads}")

    @property
    def is_multilingual(self) -> bool:
        return self.vocab_size >= 51865


def expected_shapes(d: Dims) -> dict[str, tuple[int, ...]]:
    """Every parameter a Hugging Face WhisperForConditionalGeneration checkpoint holds (proj_out is tied)."""
    D = d.d_model
    s: dict[str, tuple[int, ...]] = {
        "model.encoder.conv1.weight": (D, d.num_mel_bins, 3),
        "model.encoder.conv1.bias": (D,),
        "model.encoder.conv2.weight": (D, D, 3),
        "model.encoder.conv2.bias": (D,),
        "model.encoder.embed_positions.weight": (d.max_source_positions, D),
    }

    def attn(p: str) -> None:
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s[f"{p}.{proj}.weight"] = (D, D)
            if proj != "k_proj":
                s[f"{p}.{proj}.bias"] = (D,)

    def ln(p: str) -> None:
        s[f"{p}.weight"] = (D,)
        s[f"{p}.bias"] = (D,)

    def ffn(p: str, f: int) -> None:
        s[f"{p}.fc1.weight"] = (f, D)
        s[f"{p}.fc1.bias"] = (f,)
        s[f"{p}.fc2.weight"] = (D, f)
        s[f"{p}.fc2.bias"] = (D,)
        ln(f"{p}.final_layer_norm")

    for i in range(d.encoder_layers):
        p = f"model.encoder.layers.{i}"
        attn(f"{p}.self_attn")
        ln(f"{p}.self_attn_layer_norm")
        ffn(p, d.encoder_ffn_dim)
    ln("model.encoder.layer_norm")
    s["model.decoder.embed_tokens.weight"] = (d.vocab_size, D)
    s["model.decoder.embed_positions.weight"] = (d.max_target_positions, D)
    for i in range(d.decoder_layers):
        p = f"model.decoder.layers.{i}"
        attn(f"{p}.self_attn")
        ln(f"{p}.self_attn_layer_norm")
        attn(f"{p}.encoder_attn")
        ln(f"{p}.encoder_attn_layer_norm")
        ffn(p, d.decoder_ffn_dim)
    ln("model.decoder.layer_norm")
    return s


def default_alignment_heads(d: Dims) -> list[list[int]]:
    """openai-whisper's default when a model has no tuned heads: every head of the second half of the decoder."""
    return [[layer, head] for layer in range(d.decoder_layers // 2, d.decoder_layers) for head in range(d.decoder_heads)]


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """The fixed encoder position table of Whisper (same formula as openai-whisper)."""
    if channels % 2:
        raise CheckpointError(f"sinusoidal positions need an even width, got {channels}")
    log_timescale_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_timescale_increment * torch.arange(channels // 2))
    scaled_time = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=1)


# --------------------------------------------------------------------------------------------- configs


def hf_config(d: Dims, st: SpecialTokens, *, suppress_tokens: list[int], begin_suppress_tokens: list[int],
              dtype: str = "float16") -> dict:
    """A complete config.json for transformers' WhisperForConditionalGeneration.

    bos/eos/pad are all <|endoftext|> (the tokenizer's bos/eos/pad token); decoder start is
    <|startoftranscript|>. Generation-only fields (forced ids, lang_to_id...) live in
    generation_config.json, as on the Hub today.
    """
    return {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "activation_dropout": 0.0,
        "activation_function": "gelu",
        "apply_spec_augment": False,
        "attention_dropout": 0.0,
        "begin_suppress_tokens": list(begin_suppress_tokens),
        "bos_token_id": st.eot,
        "classifier_proj_size": 256,
        "d_model": d.d_model,
        "decoder_attention_heads": d.decoder_heads,
        "decoder_ffn_dim": d.decoder_ffn_dim,
        "decoder_layerdrop": 0.0,
        "decoder_layers": d.decoder_layers,
        "decoder_start_token_id": st.sot,
        "dropout": 0.0,
        "dtype": dtype,
        "encoder_attention_heads": d.encoder_heads,
        "encoder_ffn_dim": d.encoder_ffn_dim,
        "encoder_layerdrop": 0.0,
        "encoder_layers": d.encoder_layers,
        "eos_token_id": st.eot,
        "init_std": 0.02,
        "is_encoder_decoder": True,
        "mask_feature_length": 10,
        "mask_feature_min_masks": 0,
        "mask_feature_prob": 0.0,
        "mask_time_length": 10,
        "mask_time_min_masks": 2,
        "mask_time_prob": 0.05,
        "max_source_positions": d.max_source_positions,
        "max_target_positions": d.max_target_positions,
        "median_filter_width": 7,
        "num_hidden_layers": d.encoder_layers,
        "num_mel_bins": d.num_mel_bins,
        "pad_token_id": st.eot,
        "scale_embedding": False,
        "suppress_tokens": list(suppress_tokens),
        "tie_word_embeddings": True,
        "use_cache": True,
        "use_weighted_layer_sum": False,
        "vocab_size": d.vocab_size,
    }


def generation_config(d: Dims, st: SpecialTokens, *, suppress_tokens: list[int], begin_suppress_tokens: list[int],
                      alignment_heads: list[list[int]]) -> dict:
    """generation_config.json in the shape of the openai/whisper-* Hub repos.

    forced_decoder_ids (deprecated in transformers) is not written; multilingual models get
    "task": "transcribe" instead, which transformers uses the same way (language still auto-detected).
    """
    for layer, head in alignment_heads:
        if not (0 <= layer < d.decoder_layers and 0 <= head < d.decoder_heads):
            raise CheckpointError(f"alignment head ({layer}, {head}) is outside the decoder "
                                  f"({d.decoder_layers} layers x {d.decoder_heads} heads)")
    g = {
        "alignment_heads": [[int(a), int(b)] for a, b in alignment_heads],
        "begin_suppress_tokens": list(begin_suppress_tokens),
        "bos_token_id": st.eot,
        "decoder_start_token_id": st.sot,
        "eos_token_id": st.eot,
        "is_multilingual": d.is_multilingual,
        "max_initial_timestamp_index": 50,
        "max_length": d.max_target_positions,
        "no_timestamps_token_id": st.notimestamps,
        "pad_token_id": st.eot,
        "prev_sot_token_id": st.startofprev,
        "return_timestamps": False,
        "suppress_tokens": list(suppress_tokens),
    }
    if d.is_multilingual:
        g["lang_to_id"] = dict(st.languages)
        g["task_to_id"] = {"transcribe": st.transcribe, "translate": st.translate}
        # Default task. The Hub repos say this with the deprecated forced_decoder_ids [[1, null], [2, transcribe]];
        # with neither, transformers prompts <|sot|><|lang|><|notimestamps|> (no task token) and the model babbles.
        g["task"] = "transcribe"
    return g


def preprocessor_config(num_mel_bins: int) -> dict:
    return {
        "chunk_length": 30,
        "dither": 0.0,
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": num_mel_bins,
        "hop_length": 160,
        "n_fft": 400,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "processor_class": "WhisperProcessor",
        "return_attention_mask": False,
        "sampling_rate": 16000,
    }


# --------------------------------------------------------------------------------------------- files


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def check_state_dict(sd: dict[str, torch.Tensor], d: Dims) -> None:
    """Raise CheckpointError unless sd has exactly the expected names and shapes (proj_out excluded)."""
    exp = expected_shapes(d)
    missing = sorted(set(exp) - set(sd))
    unexpected = sorted(set(sd) - set(exp))
    if missing or unexpected:
        raise CheckpointError(f"state dict does not match the config: missing {missing[:5]}{'...' if len(missing) > 5 else ''}"
                              f" ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})")
    for k, shape in exp.items():
        if tuple(sd[k].shape) != shape:
            raise CheckpointError(f"{k}: shape {tuple(sd[k].shape)}, config implies {shape}")


def save_safetensors(dst: Path, sd: dict[str, torch.Tensor], *, shards: int = 1) -> list[str]:
    """Write model.safetensors, or `shards` files model-0000i-of-0000N.safetensors + index json.

    Keys keep the order of `sd`; shards are cut greedily at ~total/shards bytes.
    """
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in sd.items()}
    meta = {"format": "pt"}
    for old in list(dst.glob("model*.safetensors")) + [dst / INDEX_NAME]:
        if old.exists():
            old.unlink()
    if shards <= 1:
        save_file(sd, str(dst / SAFE_NAME), metadata=meta)
        return [SAFE_NAME]
    shards = min(shards, len(sd))
    total = sum(v.numel() * v.element_size() for v in sd.values())
    target = total / shards
    groups: list[list[str]] = [[]]
    acc = 0
    for k, v in sd.items():
        if groups[-1] and acc >= target * len(groups) and len(groups) < shards:
            groups.append([])
        groups[-1].append(k)
        acc += v.numel() * v.element_size()
    while len(groups) < shards:  # few large tensors: split the biggest group
        big = max((g for g in groups if len(g) > 1), key=len)
        i = groups.index(big)
        groups[i:i + 1] = [big[: len(big) // 2], big[len(big) // 2:]]
    n = len(groups)
    names, weight_map = [], {}
    for i, g in enumerate(groups):
        name = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        save_file({k: sd[k] for k in g}, str(dst / name), metadata=meta)
        names.append(name)
        weight_map.update({k: name for k in g})
    write_json(dst / INDEX_NAME, {"metadata": {"total_size": total}, "weight_map": weight_map})
    return names + [INDEX_NAME]


def write_hf_dir(dst: str | Path, *, sd: dict[str, torch.Tensor] | None, dims: Dims, tokenizer: dict | None,
                 suppress_tokens: list[int], begin_suppress_tokens: list[int], alignment_heads: list[list[int]],
                 dtype: str | None = "float16", shards: int = 1) -> list[str]:
    """Write a complete Hugging Face Whisper directory; returns the file names written.

    sd=None writes the configs only (no weights). The state dict is checked against the config
    first and cast to `dtype` (None: keep the tensors' dtype).
    """
    dims.validate()
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    if tokenizer is None:
        raise CheckpointError("a tokenizer.json is needed to fill in the special token ids")
    st = special_tokens(tokenizer)
    if max(int(a["id"]) for a in tokenizer["added_tokens"]) >= dims.vocab_size:
        raise CheckpointError(f"tokenizer has ids up to {max(int(a['id']) for a in tokenizer['added_tokens'])}, "
                              f"model vocab_size is {dims.vocab_size}")
    for name, ids in (("suppress_tokens", suppress_tokens), ("begin_suppress_tokens", begin_suppress_tokens)):
        bad = [i for i in ids if not 0 <= i < dims.vocab_size]
        if bad:
            raise CheckpointError(f"{name} has ids outside the vocabulary: {bad[:5]}")
    written = []
    if sd is not None:
        check_state_dict(sd, dims)
        if dtype is None:  # keep the tensors' own dtype
            dtype = dtype_name(sd["model.decoder.embed_tokens.weight"].dtype)
        tdt = parse_dtype(dtype)
        sd = {k: v.to(tdt) if v.is_floating_point() else v for k, v in sd.items()}
        written += save_safetensors(dst, sd, shards=shards)
        for name in written:  # safetensors creates files 0600; make them as readable as the json files
            os.chmod(dst / name, 0o644)
    elif dtype is None:
        dtype = "float32"
    files = {
        "config.json": hf_config(dims, st, suppress_tokens=suppress_tokens,
                                 begin_suppress_tokens=begin_suppress_tokens, dtype=dtype),
        "generation_config.json": generation_config(dims, st, suppress_tokens=suppress_tokens,
                                                    begin_suppress_tokens=begin_suppress_tokens,
                                                    alignment_heads=alignment_heads),
        "preprocessor_config.json": preprocessor_config(dims.num_mel_bins),
        "tokenizer_config.json": tokenizer_config(tokenizer),
    }
    for name, obj in files.items():
        write_json(dst / name, obj)
        written.append(name)
    with open(dst / "tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False)
    written.append("tokenizer.json")
    return written


# --------------------------------------------------------------------------------------------- reading


def read_config(src: str | Path) -> dict:
    p = Path(src) / "config.json"
    if not p.is_file():
        raise SourceNotFoundError(f"no config.json in {src}")
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def load_hf_state_dict(src: str | Path) -> dict[str, torch.Tensor]:
    """Load model.safetensors, a sharded safetensors index, or pytorch_model.bin from an HF directory."""
    from safetensors.torch import load_file

    src = Path(src)
    if (src / SAFE_NAME).is_file():
        return load_file(str(src / SAFE_NAME))
    if (src / INDEX_NAME).is_file():
        with open(src / INDEX_NAME, encoding="utf-8") as f:
            index = json.load(f)
        sd: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            if not (src / shard).is_file():
                raise SourceNotFoundError(f"{src / INDEX_NAME} names shard {shard}, which is missing")
            part = load_file(str(src / shard))
            sd.update(part)
        missing = sorted(set(index["weight_map"]) - set(sd))
        if missing:
            raise CheckpointError(f"{src}: index lists {len(missing)} keys absent from the shards, e.g. {missing[0]}")
        return sd
    if (src / "pytorch_model.bin").is_file():
        return torch.load(src / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise SourceNotFoundError(f"no {SAFE_NAME}, {INDEX_NAME} or pytorch_model.bin in {src}")
