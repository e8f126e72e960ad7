"""openai-whisper checkpoints (`.pt`) <-> the Hugging Face Whisper layout.

An openai-whisper checkpoint is `torch.save({"dims": {...}, "model_state_dict": {...}})`, dims being
n_mels, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_vocab, n_text_ctx, n_text_state,
n_text_head, n_text_layer. openai-whisper hard-codes the MLP width to 4 * n_state and ties the output
projection to the token embedding (as Hugging Face does).

Alignment heads: `whisper.load_model(path)` does NOT read them from a file (it applies its built-in
table only for official model names; a path gets the default "second half of the decoder"). The
export stores them anyway under checkpoint["alignment_heads"] in openai's own encoding,
base85(gzip(bool[n_text_layer, n_text_head] as bytes)) (gzip mtime 0, so output is reproducible);
apply them after loading with:

    model = whisper.load_model(path)
    model.set_alignment_heads(torch.load(path, weights_only=True)["alignment_heads"])

import-openai reads that key back when present.

Tokenizer for import-openai (a .pt has none), first match wins:
  1. --tokenizer PATH: a tokenizer.json, or a directory holding one, or "auto";
  2. tokenizer.json next to the .pt;
  3. tokenizer.json in a directory named like the .pt without its suffix (tiny.en.pt -> tiny.en/).
"auto" builds it from the installed model packages by vocabulary size: 51864 -> the tiny.en one
(+ timestamp tokens), 51865 -> the multilingual base one, 51866 -> base + <|yue|> (large-v3).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError, SourceNotFoundError, TokenizerError
from .hf_layout import Dims, default_alignment_heads, load_hf_state_dict, parse_dtype, read_config, TIED_KEY, write_hf_dir
from .tokenizer_json import (default_begin_suppress_tokens, default_suppress_tokens, load_tokenizer_json,
                             vocab_size_of, with_timestamp_tokens)

# (openai suffix, HF suffix) inside one residual block
_BLOCK = [
    ("attn.query", "self_attn.q_proj"), ("attn.key", "self_attn.k_proj"), ("attn.value", "self_attn.v_proj"),
    ("attn.out", "self_attn.out_proj"), ("attn_ln", "self_attn_layer_norm"),
    ("cross_attn.query", "encoder_attn.q_proj"), ("cross_attn.key", "encoder_attn.k_proj"),
    ("cross_attn.value", "encoder_attn.v_proj"), ("cross_attn.out", "encoder_attn.out_proj"),
    ("cross_attn_ln", "encoder_attn_layer_norm"),
    ("mlp.0", "fc1"), ("mlp.2", "fc2"), ("mlp_ln", "final_layer_norm"),
]
_TOP = [
    ("encoder.conv1", "model.encoder.conv1"), ("encoder.conv2", "model.encoder.conv2"),
    ("encoder.ln_post", "model.encoder.layer_norm"), ("decoder.token_embedding", "model.decoder.embed_tokens"),
    ("decoder.ln", "model.decoder.layer_norm"),
]
_WHOLE = [
    ("encoder.positional_embedding", "model.encoder.embed_positions.weight"),
    ("decoder.positional_embedding", "model.decoder.embed_positions.weight"),
]
_BLOCK_RE_OAI = re.compile(r"(encoder|decoder)\.blocks\.(\d+)\.(.+)\.(weight|bias)")
_BLOCK_RE_HF = re.compile(r"model\.(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")


def _rename(k: str, src: int, block_re: re.Pattern, block_fmt: str, kind: str) -> str:
    """`k` from one naming to the other; `src` picks the side of the (openai, HF) pairs it is named in."""
    dst = 1 - src
    for pair in _WHOLE:
        if k == pair[src]:
            return pair[dst]
    m = block_re.fullmatch(k)
    if m:
        side, i, mod, wb = m.groups()
        for pair in _BLOCK:
            if mod == pair[src]:
                return block_fmt.format(side=side, i=i, mod=pair[dst], wb=wb)
    for pair in _TOP:
        if k.startswith(pair[src] + "."):
            return pair[dst] + k[len(pair[src]):]
    raise CheckpointError(f"unknown {kind} parameter {k!r}")


def openai_to_hf_name(k: str) -> str:
    return _rename(k, 0, _BLOCK_RE_OAI, "model.{side}.layers.{i}.{mod}.{wb}", "openai-whisper")


def hf_to_openai_name(k: str) -> str:
    return _rename(k, 1, _BLOCK_RE_HF, "{side}.blocks.{i}.{mod}.{wb}", "Hugging Face Whisper")


def dims_to_openai(d: Dims) -> dict[str, int]:
    for side, ffn in (("encoder", d.encoder_ffn_dim), ("decoder", d.decoder_ffn_dim)):
        if ffn != 4 * d.d_model:
            raise CheckpointError(f"{side}_ffn_dim is {ffn}; openai-whisper only supports 4 * d_model = {4 * d.d_model}")
    return {
        "n_mels": d.num_mel_bins, "n_audio_ctx": d.max_source_positions, "n_audio_state": d.d_model,
        "n_audio_head": d.encoder_heads, "n_audio_layer": d.encoder_layers, "n_vocab": d.vocab_size,
        "n_text_ctx": d.max_target_positions, "n_text_state": d.d_model, "n_text_head": d.decoder_heads,
        "n_text_layer": d.decoder_layers,
    }


def dims_from_openai(dims: dict) -> Dims:
    try:
        if int(dims["n_audio_state"]) != int(dims["n_text_state"]):
            raise CheckpointError(f"n_audio_state {dims['n_audio_state']} != n_text_state {dims['n_text_state']}: "
                                  "the Hugging Face layout has a single d_model")
        d = int(dims["n_audio_state"])
        return Dims(d_model=d, encoder_layers=int(dims["n_audio_layer"]), decoder_layers=int(dims["n_text_layer"]),
                    encoder_heads=int(dims["n_audio_head"]), decoder_heads=int(dims["n_text_head"]),
                    encoder_ffn_dim=4 * d, decoder_ffn_dim=4 * d, num_mel_bins=int(dims["n_mels"]),
                    vocab_size=int(dims["n_vocab"]), max_source_positions=int(dims["n_audio_ctx"]),
                    max_target_positions=int(dims["n_text_ctx"]))
    except KeyError as e:
        raise CheckpointError(f"checkpoint dims lack {e.args[0]!r}") from None


def encode_alignment_heads(heads: list[list[int]], n_layer: int, n_head: int) -> bytes:
    """openai-whisper's encoding: base85(gzip(bool mask [n_layer, n_head]))."""
    mask = np.zeros((n_layer, n_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0))


def decode_alignment_heads(dump: bytes | str, n_layer: int, n_head: int) -> list[list[int]]:
    if isinstance(dump, str):
        dump = dump.encode("ascii")
    try:
        arr = np.frombuffer(gzip.decompress(base64.b85decode(dump)), dtype=bool)
    except (ValueError, OSError) as e:
        raise CheckpointError(f"alignment_heads is not openai's base85(gzip(bool mask)) encoding: {e}") from None
    if arr.size != n_layer * n_head:
        raise CheckpointError(f"alignment_heads mask has {arr.size} entries, decoder has {n_layer} x {n_head}")
    return [[int(a), int(b)] for a, b in np.argwhere(arr.reshape(n_layer, n_head))]


# --------------------------------------------------------------------------------------------- export


def export_openai(src: str | Path, dst: str | Path, *, dtype: str | None = None) -> dict:
    """Hugging Face Whisper directory -> openai-whisper .pt (keeps the tensor dtype unless `dtype`)."""
    src = Path(src)
    cfg = read_config(src)
    d = Dims.from_config(cfg)
    odims = dims_to_openai(d)
    sd = load_hf_state_dict(src)
    if TIED_KEY in sd:
        if not torch.equal(sd[TIED_KEY], sd.get("model.decoder.embed_tokens.weight", torch.empty(0))):
            raise CheckpointError(f"{src}: {TIED_KEY} differs from the token embedding; openai-whisper ties them")
        del sd[TIED_KEY]
    from .hf_layout import check_state_dict

    check_state_dict(sd, d)
    tdt = parse_dtype(dtype) if dtype else None
    out = {}
    for k, v in sd.items():
        out[hf_to_openai_name(k)] = v.to(tdt) if (tdt is not None and v.is_floating_point()) else v
    heads = None
    gpath = src / "generation_config.json"
    if gpath.is_file():
        with open(gpath, encoding="utf-8") as f:
            heads = json.load(f).get("alignment_heads")
    if not heads:
        heads = default_alignment_heads(d)
    ckpt = {"dims": odims, "model_state_dict": out,
            "alignment_heads": encode_alignment_heads(heads, d.decoder_layers, d.decoder_heads)}
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst)
    return ckpt


# --------------------------------------------------------------------------------------------- import


def load_openai_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SourceNotFoundError(f"openai-whisper checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad pickle/zip
        raise CheckpointError(f"{path}: not a loadable torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not an openai-whisper checkpoint (expected keys 'dims' and "
                              f"'model_state_dict', found {keys})")
    return ckpt


def resolve_tokenizer(src: Path, tokenizer: str | Path | None, vocab_size: int) -> dict:
    if tokenizer is not None and str(tokenizer) == "auto":
        from .installed import tokenizer_for_vocab

        return tokenizer_for_vocab(vocab_size)
    if tokenizer is not None:
        return load_tokenizer_json(tokenizer)
    for cand in (src.parent / "tokenizer.json", src.with_suffix("") / "tokenizer.json"):
        if cand.is_file():
            return load_tokenizer_json(cand)
    raise SourceNotFoundError(
        f"no tokenizer for {src}: pass --tokenizer PATH (a tokenizer.json or a directory holding one), put "
        f"tokenizer.json next to the checkpoint or in {src.with_suffix('')}/, or use --tokenizer auto "
        "(built from the installed model packages)")


def import_openai(src: str | Path, dst: str | Path, *, tokenizer: str | Path | None = None,
                  dtype: str | None = None) -> Dims:
    """openai-whisper .pt -> Hugging Face directory (suppress lists computed as openai-whisper does).

    dtype None keeps the checkpoint's dtype (official checkpoints are float16)."""
    src = Path(src)
    ckpt = load_openai_checkpoint(src)
    d = dims_from_openai(ckpt["dims"])
    sd = {}
    for k, v in ckpt["model_state_dict"].items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{src}: model_state_dict[{k!r}] is a {type(v).__name__}, not a tensor")
        sd[openai_to_hf_name(k)] = v
    tj = resolve_tokenizer(src, tokenizer, d.vocab_size)
    tj, _ = with_timestamp_tokens(tj)
    if vocab_size_of(tj) != d.vocab_size:
        raise TokenizerError(f"tokenizer covers {vocab_size_of(tj)} ids, checkpoint n_vocab is {d.vocab_size}")
    if ckpt.get("alignment_heads") is not None:
        heads = decode_alignment_heads(ckpt["alignment_heads"], d.decoder_layers, d.decoder_heads)
    else:
        heads = default_alignment_heads(d)
    write_hf_dir(dst, sd=sd, dims=d, tokenizer=tj, suppress_tokens=default_suppress_tokens(tj),
                 begin_suppress_tokens=default_begin_suppress_tokens(tj), alignment_heads=heads, dtype=dtype)
    return d
