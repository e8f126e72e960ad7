"""Convert a CTranslate2 Whisper model (faster-whisper format) into a Hugging Face Whisper directory.

model.bin layout (little-endian), binary version 6:
    uint32 version; string spec name ("WhisperSpec"); uint32 spec revision; uint32 n_vars;
    per variable: string name, uint8 rank, uint32 dims[rank], uint8 dtype, uint32 nbytes, raw bytes;
    uint32 n_aliases; per alias: string alias, string target.
A string is a uint16 length (counting a trailing NUL) followed by the bytes. dtype ids:
0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. CTranslate2 aliases any variable whose
value equals an alphabetically earlier one (decoder/projection/weight -> decoder/embeddings/weight
for Whisper). Quantized models store int8/int16 `weight` plus `weight_scale` (w = q / scale).

CTranslate2 fuses attention projections: self-attention linear_0 = [q; k; v] (3*D rows), cross
attention linear_0 = q, linear_1 = [k; v], linear_2 = out. Hugging Face k_proj has no bias, so the
k rows of the fused bias are zeros (checked; a k bias cancels in the softmax anyway, so dropping it
is exact even when it is not zero). No scaling is folded into the weights.
"""

from __future__ import annotations

import json
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import CT2FormatError, CT2TruncatedError, SourceNotFoundError, TokenizerError, UnknownVariableError
from .hf_layout import Dims, default_alignment_heads, sinusoids, write_hf_dir
from .tokenizer_json import (default_begin_suppress_tokens, default_suppress_tokens, load_tokenizer_json,
                             special_tokens, vocab_size_of, with_timestamp_tokens)

SUPPORTED_VERSION = 6
SPEC_NAME = "WhisperSpec"
CT2_DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16, 5: torch.bfloat16}
CT2_DTYPE_IDS = {v: k for k, v in CT2_DTYPES.items()}

# Scalars of the CTranslate2 Whisper spec: name -> required value (None: any value, not used here).
# "decoder/alignment_heads"/"alignment_layer" are TransformerDecoderSpec's generic return_alignments
# settings (1 / -1), not Whisper's alignment heads (those are in config.json).
KNOWN_SCALARS: dict[str, int | None] = {
    "encoder/num_heads": None,
    "decoder/num_heads": None,
    "decoder/activation": 3,  # ctranslate2 Activation.GELU
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/start_from_zero_embedding": 0,
    "decoder/alibi": 0,
    "decoder/alibi_use_positive_positions": None,
    "decoder/scale_alibi": None,
    "decoder/alignment_heads": None,
    "decoder/alignment_layer": None,
    "decoder/layernorm_embedding": 0,
    "decoder/multi_query_attention": 0,
}


@dataclass
class CT2Model:
    """The parsed contents of a model.bin."""

    version: int
    spec: str
    revision: int
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def resolve(self, name: str) -> str:
        seen = set()
        while name in self.aliases:
            if name in seen:
                raise CT2FormatError(f"{self.source}: alias cycle at {name}")
            seen.add(name)
            name = self.aliases[name]
        return name

    def __contains__(self, name: str) -> bool:
        return name in self.variables or name in self.aliases

    def names(self) -> set[str]:
        return set(self.variables) | set(self.aliases)


# --------------------------------------------------------------------------------------------- parsing


class _Reader:
    def __init__(self, buf: bytearray, desc: str):
        self.buf, self.off, self.desc = buf, 0, desc

    def need(self, n: int, what: str) -> None:
        left = len(self.buf) - self.off
        if n > left:
            raise CT2TruncatedError(
                f"{self.desc}: truncated at byte {self.off} of {len(self.buf)}: {what} needs {n} bytes, "
                f"{left} left. The file is incomplete (interrupted download?) or, for a split model, "
                f"not all model.bin.part* files were given, in order.")

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize("<" + fmt)
        self.need(size, what)
        vals = struct.unpack_from("<" + fmt, self.buf, self.off)
        self.off += size
        return vals[0] if len(vals) == 1 else vals

    def string(self, what: str) -> str:
        n = self.unpack("H", f"length of {what}")
        if n == 0:
            raise CT2FormatError(f"{self.desc}: byte {self.off - 2}: empty string for {what} (no NUL); not a CT2 model.bin?")
        self.need(n, what)
        raw = bytes(self.buf[self.off:self.off + n])
        self.off += n
        if raw[-1] != 0:
            raise CT2FormatError(f"{self.desc}: byte {self.off - n}: {what} is not NUL-terminated; not a CT2 model.bin?")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise CT2FormatError(f"{self.desc}: byte {self.off - n}: {what} is not UTF-8; not a CT2 model.bin?") from None


def _read_parts(paths: list[Path]) -> bytearray:
    for p in paths:
        if not p.is_file():
            raise SourceNotFoundError(f"CTranslate2 model file not found: {p}")
    total = sum(p.stat().st_size for p in paths)
    buf = bytearray(total)
    view = memoryview(buf)
    off = 0
    for p in paths:
        with open(p, "rb") as f:
            while True:
                n = f.readinto(view[off:])
                if not n:
                    break
                off += n
    if off != total:
        raise CT2TruncatedError(f"{paths}: read {off} bytes, expected {total} (files changed while reading?)")
    return buf


def parse_ct2(buf: bytes | bytearray, desc: str = "model.bin") -> CT2Model:
    """Parse model.bin bytes. Raises CT2FormatError / CT2TruncatedError with the offending offset."""
    buf = buf if isinstance(buf, bytearray) else bytearray(buf)
    r = _Reader(buf, desc)
    if len(buf) < 4:
        raise CT2TruncatedError(f"{desc}: only {len(buf)} bytes; not a CTranslate2 model.bin")
    version = r.unpack("I", "binary version")
    if version != SUPPORTED_VERSION:
        if 1 <= version <= 5:
            raise CT2FormatError(f"{desc}: CTranslate2 binary version {version}; only version {SUPPORTED_VERSION} "
                                 "is supported (re-convert with a current ctranslate2)")
        raise CT2FormatError(f"{desc}: not a CTranslate2 model.bin (first 4 bytes read as version {version}, "
                             f"expected {SUPPORTED_VERSION})")
    spec = r.string("spec name")
    if spec != SPEC_NAME:
        raise CT2FormatError(f"{desc}: a CTranslate2 {spec!r} model, not a {SPEC_NAME} (Whisper) model")
    revision = r.unpack("I", "spec revision")
    n_vars = r.unpack("I", "variable count")
    if n_vars > 1_000_000:
        raise CT2FormatError(f"{desc}: implausible variable count {n_vars}")
    variables: dict[str, torch.Tensor] = {}
    for i in range(n_vars):
        name = r.string(f"name of variable {i}")
        rank = r.unpack("B", f"rank of {name}")
        if rank > 8:
            raise CT2FormatError(f"{desc}: {name} has rank {rank}; corrupt file?")
        dims = [r.unpack("I", f"dims of {name}") for _ in range(rank)]
        dt_id = r.unpack("B", f"dtype of {name}")
        if dt_id not in CT2_DTYPES:
            raise CT2FormatError(f"{desc}: {name} has unknown dtype id {dt_id} (known: {sorted(CT2_DTYPES)})")
        dtype = CT2_DTYPES[dt_id]
        nbytes = r.unpack("I", f"byte count of {name}")
        numel = 1
        for x in dims:
            numel *= x
        itemsize = torch.empty((), dtype=dtype).element_size()
        if nbytes != numel * itemsize:
            raise CT2FormatError(f"{desc}: {name} shape {dims} {dtype} needs {numel * itemsize} bytes, header says {nbytes}")
        r.need(nbytes, f"data of {name}")
        if numel:
            t = torch.frombuffer(buf, dtype=dtype, count=numel, offset=r.off).clone().reshape(dims)
        else:
            t = torch.empty(dims, dtype=dtype)
        r.off += nbytes
        if name in variables:
            raise CT2FormatError(f"{desc}: variable {name} appears twice")
        variables[name] = t
    n_aliases = r.unpack("I", "alias count")
    aliases = {}
    for i in range(n_aliases):
        alias = r.string(f"alias {i}")
        target = r.string(f"target of alias {alias}")
        aliases[alias] = target
    if r.off != len(buf):
        raise CT2FormatError(f"{desc}: {len(buf) - r.off} unexpected bytes after the end of the model "
                             "(a .part file given twice, or in the wrong order?)")
    model = CT2Model(version, spec, revision, variables, aliases, desc)
    for alias in aliases:
        if model.resolve(alias) not in variables:
            raise CT2FormatError(f"{desc}: alias {alias} -> {aliases[alias]} points at no variable")
    return model


def model_files(src: str | Path) -> list[Path]:
    """The model.bin of a CT2 directory, or its model.bin.part1, part2, ... in numeric order."""
    src = Path(src)
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise SourceNotFoundError(f"no such CTranslate2 model directory or file: {src}")
    if (src / "model.bin").is_file():
        return [src / "model.bin"]
    parts = []
    for p in src.iterdir():
        m = re.fullmatch(r"model\.bin\.part(\d+)", p.name)
        if m:
            parts.append((int(m.group(1)), p))
    if not parts:
        raise SourceNotFoundError(f"{src} holds neither model.bin nor model.bin.part1, part2, ...")
    parts.sort()
    nums = [n for n, _ in parts]
    if nums != list(range(nums[0], nums[0] + len(nums))):
        raise SourceNotFoundError(f"{src}: model.bin parts are not consecutive: {nums}")
    return [p for _, p in parts]


def read_ct2(paths: str | Path | list) -> CT2Model:
    """Read a model.bin, or the byte concatenation of model.bin.part1, part2, ... (given in order)."""
    if isinstance(paths, (str, Path)):
        paths = model_files(paths)
    paths = [Path(p) for p in paths]
    desc = str(paths[0]) if len(paths) == 1 else " + ".join(str(p) for p in paths)
    return parse_ct2(_read_parts(paths), desc)


def write_ct2(path: str | Path, variables: dict[str, torch.Tensor], aliases: dict[str, str] | None = None,
              *, spec: str = SPEC_NAME, revision: int = 3, version: int = SUPPORTED_VERSION) -> None:
    """Write a model.bin (used by tests to build synthetic models; variables are written sorted)."""

    def s(x: str) -> bytes:
        b = x.encode("utf-8")
        return struct.pack("<H", len(b) + 1) + b + b"\0"

    out = [struct.pack("<I", version), s(spec), struct.pack("<II", revision, len(variables))]
    for name, t in sorted(variables.items()):
        t = t.contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        out += [s(name), struct.pack("<B", t.dim()), struct.pack(f"<{t.dim()}I", *t.shape),
                struct.pack("<BI", CT2_DTYPE_IDS[t.dtype], len(raw)), raw]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for a, tgt in sorted(aliases.items()):
        out += [s(a), s(tgt)]
    Path(path).write_bytes(b"".join(out))


# --------------------------------------------------------------------------------------------- mapping


@dataclass
class ConversionReport:
    notes: list[str] = field(default_factory=list)
    max_abs_k_bias: float = 0.0
    dequantized: list[str] = field(default_factory=list)
    ignored_scalars: dict[str, int] = field(default_factory=dict)


class _Taker:
    """Hands out variables (resolving aliases, dequantizing) and records what was consumed."""

    def __init__(self, m: CT2Model, report: ConversionReport):
        self.m, self.report, self.used = m, report, set()

    def has(self, name: str) -> bool:
        return name in self.m

    def raw(self, name: str) -> torch.Tensor:
        if name not in self.m:
            raise CT2FormatError(f"{self.m.source}: required variable {name} is missing")
        self.used.add(name)
        real = self.m.resolve(name)
        self.used.add(real)
        return self.m.variables[real]

    def scalar(self, name: str) -> int:
        t = self.raw(name)
        if t.numel() != 1:
            raise CT2FormatError(f"{self.m.source}: {name} should be a scalar, has shape {list(t.shape)}")
        return int(t.reshape(()).item()) if not t.is_floating_point() else float(t.reshape(()).item())

    def tensor(self, name: str) -> torch.Tensor:
        t = self.raw(name)
        if not t.is_floating_point():
            scale_name = name + "_scale"
            if not self.has(scale_name):
                raise CT2FormatError(f"{self.m.source}: {name} is {t.dtype} without {scale_name}")
            scale = self.raw(scale_name).float()
            if scale.numel() == 1:
                t = t.float() / scale.reshape(())
            elif scale.numel() == t.shape[0]:
                t = t.float() / scale.reshape(-1, *([1] * (t.dim() - 1)))
            else:
                raise CT2FormatError(f"{self.m.source}: {scale_name} has {scale.numel()} values for {t.shape[0]} rows "
                                     "(group-wise quantization is not supported)")
            self.report.dequantized.append(name)
        return t

    def linear(self, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tensor(f"{prefix}/weight"), self.tensor(f"{prefix}/bias")

    def layer_norm(self, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tensor(f"{prefix}/gamma"), self.tensor(f"{prefix}/beta")


def _layer_count(m: CT2Model, side: str) -> int:
    idx = {int(mm.group(1)) for n in m.names() if (mm := re.match(rf"{side}/layer_(\d+)/", n))}
    if not idx:
        raise CT2FormatError(f"{m.source}: no {side}/layer_N variables")
    if idx != set(range(len(idx))):
        raise CT2FormatError(f"{m.source}: {side} layers are not numbered 0..{len(idx) - 1}: {sorted(idx)}")
    return len(idx)


def ct2_to_hf_state_dict(m: CT2Model) -> tuple[dict[str, torch.Tensor], Dims, ConversionReport]:
    """Map every CT2 variable to its Hugging Face name. Raises UnknownVariableError on leftovers."""
    report = ConversionReport()
    take = _Taker(m, report)
    sd: dict[str, torch.Tensor] = {}

    for name, want in KNOWN_SCALARS.items():
        if not take.has(name):
            continue
        val = take.scalar(name)
        if want is not None and val != want:
            raise CT2FormatError(f"{m.source}: {name} = {val}, but a Whisper model needs {want}")
        if name not in ("encoder/num_heads", "decoder/num_heads"):
            report.ignored_scalars[name] = val

    enc_heads, dec_heads = take.scalar("encoder/num_heads"), take.scalar("decoder/num_heads")
    n_enc, n_dec = _layer_count(m, "encoder"), _layer_count(m, "decoder")

    def put(k: str, t: torch.Tensor) -> None:
        sd[k] = t

    def put_ln(hf: str, ct: str) -> None:
        g, b = take.layer_norm(ct)
        put(f"{hf}.weight", g)
        put(f"{hf}.bias", b)

    def put_linear(hf: str, ct: str) -> None:
        w, b = take.linear(ct)
        put(f"{hf}.weight", w)
        put(f"{hf}.bias", b)

    def split_rows(t: torch.Tensor, n: int, what: str) -> list[torch.Tensor]:
        if t.shape[0] % n:
            raise CT2FormatError(f"{m.source}: {what} has {t.shape[0]} rows, not divisible by {n}")
        return list(torch.chunk(t, n, dim=0))

    def put_fused(hf: str, ct: str, names: tuple[str, ...]) -> None:
        w, b = take.linear(ct)
        ws, bs = split_rows(w, len(names), f"{ct}/weight"), split_rows(b, len(names), f"{ct}/bias")
        for proj, wi, bi in zip(names, ws, bs):
            put(f"{hf}.{proj}.weight", wi.clone())
            if proj == "k_proj":
                kb = float(bi.float().abs().max()) if bi.numel() else 0.0
                report.max_abs_k_bias = max(report.max_abs_k_bias, kb)
            else:
                put(f"{hf}.{proj}.bias", bi.clone())

    def put_ffn(hf: str, ct: str) -> None:
        put_linear(f"{hf}.fc1", f"{ct}/linear_0")
        put_linear(f"{hf}.fc2", f"{ct}/linear_1")
        put_ln(f"{hf}.final_layer_norm", f"{ct}/layer_norm")

    # encoder
    for conv in ("conv1", "conv2"):
        put(f"model.encoder.{conv}.weight", take.tensor(f"encoder/{conv}/weight"))
        put(f"model.encoder.{conv}.bias", take.tensor(f"encoder/{conv}/bias"))
    d_model = sd["model.encoder.conv1.weight"].shape[0]
    if take.has("encoder/position_encodings/encodings"):
        put("model.encoder.embed_positions.weight", take.tensor("encoder/position_encodings/encodings"))
    else:
        report.notes.append("encoder/position_encodings/encodings absent: wrote the standard sinusoids (1500 x D)")
        put("model.encoder.embed_positions.weight", sinusoids(1500, d_model))
    for i in range(n_enc):
        hf, ct = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        put_fused(f"{hf}.self_attn", f"{ct}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        put_linear(f"{hf}.self_attn.out_proj", f"{ct}/self_attention/linear_1")
        put_ln(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
        put_ffn(hf, f"{ct}/ffn")
    put_ln("model.encoder.layer_norm", "encoder/layer_norm")

    # decoder
    emb = take.tensor("decoder/embeddings/weight")
    put("model.decoder.embed_tokens.weight", emb)
    put("model.decoder.embed_positions.weight", take.tensor("decoder/position_encodings/encodings"))
    for i in range(n_dec):
        hf, ct = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        put_fused(f"{hf}.self_attn", f"{ct}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        put_linear(f"{hf}.self_attn.out_proj", f"{ct}/self_attention/linear_1")
        put_ln(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
        put_linear(f"{hf}.encoder_attn.q_proj", f"{ct}/attention/linear_0")
        put_fused(f"{hf}.encoder_attn", f"{ct}/attention/linear_1", ("k_proj", "v_proj"))
        put_linear(f"{hf}.encoder_attn.out_proj", f"{ct}/attention/linear_2")
        put_ln(f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm")
        put_ffn(hf, f"{ct}/ffn")
    put_ln("model.decoder.layer_norm", "decoder/layer_norm")

    # output projection: Hugging Face ties it to embed_tokens, so it must equal the embeddings.
    if take.has("decoder/projection/weight"):
        if m.resolve("decoder/projection/weight") != m.resolve("decoder/embeddings/weight"):
            proj = take.tensor("decoder/projection/weight")
            if proj.shape != emb.shape or not torch.equal(proj, emb):
                raise CT2FormatError(f"{m.source}: decoder/projection/weight differs from decoder/embeddings/weight; "
                                     "a Hugging Face Whisper ties them, so this model cannot be converted")
        take.raw("decoder/projection/weight")
    if take.has("decoder/projection/bias"):
        pb = take.tensor("decoder/projection/bias")
        if pb.abs().max() != 0:
            raise CT2FormatError(f"{m.source}: decoder/projection/bias is not zero; Hugging Face Whisper has no output bias")

    if report.max_abs_k_bias:
        report.notes.append(f"k bias slices were not zero (max |b| = {report.max_abs_k_bias:g}); dropped, which is "
                            "exact because a per-query constant cancels in the softmax")

    left = sorted(m.names() - take.used)
    if left:
        raise UnknownVariableError(f"{m.source}: {len(left)} variable(s) this converter does not know: "
                                   f"{', '.join(left[:10])}{' ...' if len(left) > 10 else ''}")

    ffn_e = sd["model.encoder.layers.0.fc1.weight"].shape[0]
    ffn_d = sd["model.decoder.layers.0.fc1.weight"].shape[0]
    dims = Dims(
        d_model=d_model, encoder_layers=n_enc, decoder_layers=n_dec, encoder_heads=enc_heads, decoder_heads=dec_heads,
        encoder_ffn_dim=ffn_e, decoder_ffn_dim=ffn_d, num_mel_bins=sd["model.encoder.conv1.weight"].shape[1],
        vocab_size=emb.shape[0], max_source_positions=sd["model.encoder.embed_positions.weight"].shape[0],
        max_target_positions=sd["model.decoder.embed_positions.weight"].shape[0],
    )
    dims.validate()
    return sd, dims, report


# --------------------------------------------------------------------------------------------- driver


def load_ct2_config(meta_dir: Path) -> dict:
    p = meta_dir / "config.json"
    if not p.is_file():
        return {}
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def convert_ct2(src: str | Path | list, dst: str | Path, *, dtype: str = "float16", meta_dir: str | Path | None = None,
                tokenizer: str | Path | None = None, verbose: bool = False) -> ConversionReport:
    """Convert a CT2 Whisper model into a Hugging Face directory at dst.

    src: a directory with model.bin (or model.bin.part1, part2, ...), a model.bin path, or a list of
    part paths in order. meta_dir: where config.json / tokenizer.json live (default: the directory of
    the first model file). tokenizer: an explicit tokenizer.json path overriding meta_dir's.
    """
    paths = model_files(src) if isinstance(src, (str, Path)) else [Path(p) for p in src]
    meta = Path(meta_dir) if meta_dir is not None else paths[0].parent
    model = read_ct2(paths)
    sd, dims, report = ct2_to_hf_state_dict(model)
    del model

    tj = load_tokenizer_json(tokenizer if tokenizer is not None else meta)
    tj, added = with_timestamp_tokens(tj)
    if added:
        report.notes.append(f"added {added} timestamp tokens <|0.00|>..<|30.00|> after <|notimestamps|>")
    st = special_tokens(tj)
    if vocab_size_of(tj) != dims.vocab_size:
        raise TokenizerError(f"tokenizer.json covers {vocab_size_of(tj)} ids, the model's embeddings have "
                             f"{dims.vocab_size} rows; wrong tokenizer for this model?")

    cfg = load_ct2_config(meta)
    if "suppress_ids" in cfg:
        suppress = [int(i) for i in cfg["suppress_ids"]]
    else:
        suppress = default_suppress_tokens(tj)
        report.notes.append("no suppress_ids in config.json: computed openai-whisper's non-speech list")
    if "suppress_ids_begin" in cfg:
        begin = [int(i) for i in cfg["suppress_ids_begin"]]
    else:
        begin = default_begin_suppress_tokens(tj)
        report.notes.append("no suppress_ids_begin in config.json: using [' ', <|endoftext|>]")
    if cfg.get("alignment_heads"):
        heads = [[int(a), int(b)] for a, b in cfg["alignment_heads"]]
    else:
        heads = default_alignment_heads(dims)
        report.notes.append("no alignment_heads in config.json: using every head of the second half of the decoder")
    if begin and begin[-1] != st.eot:
        report.notes.append(f"suppress_ids_begin {begin} does not end with <|endoftext|> ({st.eot})")
    # CT2's lang_ids are ignored: tiny.en's config lists multilingual-numbered ids (off by one for .en).
    if "lang_ids" in cfg and dims.is_multilingual:
        want = sorted(st.languages.values())
        if sorted(int(i) for i in cfg["lang_ids"]) != want:
            report.notes.append("config.json lang_ids differ from the tokenizer's language tokens; used the tokenizer")

    write_hf_dir(dst, sd=sd, dims=dims, tokenizer=tj, suppress_tokens=suppress, begin_suppress_tokens=begin,
                 alignment_heads=heads, dtype=dtype)
    if verbose:
        for n in report.notes:
            print(f"note: {n}", file=sys.stderr)
    return report
