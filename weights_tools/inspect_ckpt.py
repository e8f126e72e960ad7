"""Summarize a Whisper checkpoint and compare its keys with the Hugging Face set its config implies.

PATH may be a Hugging Face directory (config.json + model.safetensors / sharded index /
pytorch_model.bin), an openai-whisper .pt, or a CTranslate2 model (directory with model.bin or
model.bin.part*, or a model.bin). Safetensors are inspected from their headers only (no weights
are loaded). The expected key set is computed from the config (hf_layout.expected_shapes).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import CheckpointError, SourceNotFoundError
from .hf_layout import INDEX_NAME, SAFE_NAME, TIED_KEY, Dims, dtype_name, expected_shapes, read_config


@dataclass
class Inspection:
    path: str
    kind: str  # "hf" | "openai" | "ct2"
    dims: dict
    is_multilingual: bool
    n_params: int
    n_bytes: int
    dtypes: dict[str, int]  # dtype -> number of tensors
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: found (...) expected (...)"
    tied_proj_out: bool = False  # proj_out.weight present (redundant; tied to embed_tokens)
    tokens: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def to_json(self) -> str:
        d = asdict(self)
        d["ok"] = self.ok
        return json.dumps(d, indent=2)

    def render(self) -> str:
        d = self.dims
        lines = [
            f"{self.path} ({self.kind})",
            f"  d_model {d['d_model']}, encoder {d['encoder_layers']} layers x {d['encoder_heads']} heads "
            f"(ffn {d['encoder_ffn_dim']}), decoder {d['decoder_layers']} layers x {d['decoder_heads']} heads "
            f"(ffn {d['decoder_ffn_dim']})",
            f"  mels {d['num_mel_bins']}, vocab {d['vocab_size']} ({'multilingual' if self.is_multilingual else 'English-only'}), "
            f"audio ctx {d['max_source_positions']}, text ctx {d['max_target_positions']}",
            f"  parameters {self.n_params:,} ({self.n_bytes / 2**20:.1f} MiB); dtypes "
            + ", ".join(f"{k} x{v}" for k, v in sorted(self.dtypes.items())),
        ]
        if self.tokens:
            lines.append("  tokens " + ", ".join(f"{k} {v}" for k, v in self.tokens.items()))
        if self.tied_proj_out:
            lines.append(f"  {TIED_KEY} present (tied to model.decoder.embed_tokens.weight; redundant)")
        for title, items in (("missing", self.missing), ("unexpected", self.unexpected), ("shape mismatch", self.mismatched)):
            lines.append(f"  {title}: {len(items)}")
            lines += [f"    {x}" for x in items[:20]]
            if len(items) > 20:
                lines.append(f"    ... {len(items) - 20} more")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("  OK: keys and shapes match the config" if self.ok else "  NOT OK")
        return "\n".join(lines)


def _compare(dims: Dims, shapes: dict[str, tuple], dtypes: dict[str, str], path: str, kind: str) -> Inspection:
    exp = expected_shapes(dims)
    tied = TIED_KEY in shapes
    shapes = {k: v for k, v in shapes.items() if k != TIED_KEY}
    missing = sorted(set(exp) - set(shapes))
    unexpected = sorted(set(shapes) - set(exp))
    mism = [f"{k}: found {tuple(shapes[k])}, expected {exp[k]}" for k in exp if k in shapes and tuple(shapes[k]) != exp[k]]
    n_params, n_bytes = 0, 0
    sizes = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "int16": 2, "int32": 4, "int64": 8, "float64": 8,
             "bool": 1, "uint8": 1}
    for k, s in shapes.items():
        n = 1
        for x in s:
            n *= x
        n_params += n
        n_bytes += n * sizes.get(dtypes[k], 4)
    return Inspection(path=path, kind=kind, dims=asdict(dims), is_multilingual=dims.is_multilingual,
                      n_params=n_params, n_bytes=n_bytes, dtypes=dict(Counter(dtypes[k] for k in shapes)),
                      missing=missing, unexpected=unexpected, mismatched=mism, tied_proj_out=tied)


_ST_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I8": "int8", "I16": "int16", "I32": "int32",
              "I64": "int64", "F64": "float64", "BOOL": "bool", "U8": "uint8"}


def _safetensors_header(path: Path) -> dict:
    import struct

    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file")
        (n,) = struct.unpack("<Q", raw)
        header = f.read(n)
    if len(header) < n:
        raise CheckpointError(f"{path}: truncated safetensors header")
    try:
        h = json.loads(header)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not a safetensors file ({e})") from None
    h.pop("__metadata__", None)
    return h


def _hf_shapes(src: Path) -> tuple[dict, dict, list[str]]:
    files: list[Path]
    notes = []
    if (src / SAFE_NAME).is_file():
        files = [src / SAFE_NAME]
    elif (src / INDEX_NAME).is_file():
        with open(src / INDEX_NAME, encoding="utf-8") as f:
            wm = json.load(f)["weight_map"]
        files = [src / s for s in sorted(set(wm.values()))]
        for p in files:
            if not p.is_file():
                raise SourceNotFoundError(f"{src / INDEX_NAME} names shard {p.name}, which is missing")
        notes.append(f"{len(files)} shards")
    elif (src / "pytorch_model.bin").is_file():
        import torch

        sd = torch.load(src / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return ({k: tuple(v.shape) for k, v in sd.items()}, {k: dtype_name(v.dtype) for k, v in sd.items()}, notes)
    else:
        raise SourceNotFoundError(f"no {SAFE_NAME}, {INDEX_NAME} or pytorch_model.bin in {src}")
    shapes, dtypes = {}, {}
    for p in files:
        for k, v in _safetensors_header(p).items():
            shapes[k] = tuple(v["shape"])
            dtypes[k] = _ST_DTYPES.get(v["dtype"], v["dtype"])
    return shapes, dtypes, notes


def inspect_path(path: str | Path) -> Inspection:
    if str(path).startswith("pkg:"):  # an installed CT2 model, as for import-ct2
        from .ct2 import read_ct2
        from .installed import locate_ct2

        src = locate_ct2(str(path)[4:])
        m = read_ct2(src.parts)
        return _inspect_ct2(m, str(path))
    p = Path(path)
    if not p.exists():
        raise SourceNotFoundError(f"no such file or directory: {p}")
    if p.is_dir() and (p / "config.json").is_file() and any(
            (p / n).is_file() for n in (SAFE_NAME, INDEX_NAME, "pytorch_model.bin")):
        cfg = read_config(p)
        dims = Dims.from_config(cfg)
        shapes, dtypes, notes = _hf_shapes(p)
        ins = _compare(dims, shapes, dtypes, str(p), "hf")
        ins.notes += notes
        if (p / "tokenizer.json").is_file():
            from .tokenizer_json import load_tokenizer_json, special_tokens

            st = special_tokens(load_tokenizer_json(p))
            ins.tokens = {"eot": st.eot, "sot": st.sot, "translate": st.translate, "transcribe": st.transcribe,
                          "notimestamps": st.notimestamps, "timestamp_begin": st.timestamp_begin,
                          "languages": len(st.languages)}
        else:
            ins.notes.append("no tokenizer.json")
        return ins
    if p.is_file() and p.suffix in (".pt", ".pth"):
        from .openai_ckpt import dims_from_openai, load_openai_checkpoint, openai_to_hf_name

        ckpt = load_openai_checkpoint(p)
        dims = dims_from_openai(ckpt["dims"])
        sd = ckpt["model_state_dict"]
        shapes, dtypes, unknown = {}, {}, []
        for k, v in sd.items():
            try:
                hk = openai_to_hf_name(k)
            except CheckpointError:
                unknown.append(k)
                continue
            shapes[hk], dtypes[hk] = tuple(v.shape), dtype_name(v.dtype)
        ins = _compare(dims, shapes, dtypes, str(p), "openai")
        ins.unexpected += [f"{k} (openai name)" for k in unknown]
        ins.notes.append("keys shown with their Hugging Face names")
        if "alignment_heads" in ckpt:
            ins.notes.append("has alignment_heads (apply with model.set_alignment_heads after whisper.load_model)")
        return ins
    from .ct2 import model_files, read_ct2

    try:
        files = model_files(p)
    except SourceNotFoundError:
        raise SourceNotFoundError(f"{p}: neither a Hugging Face directory (config.json + weights), an openai-whisper "
                                  ".pt, nor a CTranslate2 model (model.bin / model.bin.part*)") from None
    return _inspect_ct2(read_ct2(files), str(p))


def _inspect_ct2(m, path: str) -> Inspection:
    from .ct2 import ct2_to_hf_state_dict

    sd, dims, report = ct2_to_hf_state_dict(m)
    ins = _compare(dims, {k: tuple(v.shape) for k, v in sd.items()}, {k: dtype_name(v.dtype) for k, v in sd.items()},
                   path, "ct2")
    ins.notes.append(f"CTranslate2 binary v{m.version} {m.spec} rev {m.revision}, {len(m.variables)} variables, "
                     f"{len(m.aliases)} aliases; keys shown with their Hugging Face names")
    ins.notes += report.notes
    return ins
