"""Prepare what the GPU checks carry to a machine without PyPI or the hub (run here, before `device`).

Writes into .gpu/ (git-ignored):
  configs/<shape>/   config.json, generation_config.json, tokenizer.json of full-size shapes (no weights),
                     and of "toy" (tiny's layout, 64 wide) for the CPU dry run
  tiny.en-int8/      real tiny.en weights as int8 + per-row scales (38 MB, under the 64 MiB carry limit),
                     with its config/tokenizer files; tests/test_cuda.py restores fp16 weights from them
and downloads into .whl/ the wheels the device image lacks: soundfile (whisperfast imports it) and its
needs cffi and pycparser, for the device's python (3.12) and for this one (the CPU dry run of
`bench/gpu_check.sh` installs them the same way). The device image's own package list: the `device`
tool's KINDS.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
NEEDS = ("soundfile", "cffi", "pycparser")  # what `import soundfile` needs; the versions installed here
PLATFORMS = [a for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
             for a in ("--platform", p)]
OUT = ROOT / ".gpu"


def pack_int8(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    packed = {}
    for k, w in load_file(str(src / "model.safetensors")).items():
        w = w.float()
        if w.dim() >= 2:
            scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-8) / 127
            packed[k + ".q"] = torch.round(w / scale).to(torch.int8)
            packed[k + ".scale"] = scale.half()
        else:
            packed[k] = w.half()
    save_file(packed, str(dst / "int8.safetensors"))
    for f in ("config.json", "generation_config.json", "tokenizer.json", "preprocessor_config.json"):
        shutil.copy(src / f, dst / f)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from weights_tools.random_ckpt import write_random_checkpoint
    from whisperfast.model.hub import packaged_model

    for shape in ("tiny", "large-v3", "large-v3-turbo", "distil-large-v3"):
        write_random_checkpoint(OUT / "configs" / shape, shape, config_only=True)
    write_random_checkpoint(OUT / "configs" / "toy", "tiny", d_model=64, config_only=True)  # the CPU dry run
    pack_int8(packaged_model("tiny.en"), OUT / "tiny.en-int8")
    whl = ROOT / ".whl"
    whl.mkdir(exist_ok=True)
    for py in sorted({"3.12", f"{sys.version_info.major}.{sys.version_info.minor}"}):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", py, "--implementation", "cp", *PLATFORMS, "-d", str(whl),
                        *(f"{n}=={version(n)}" for n in NEEDS)], check=True)
    size = sum(f.stat().st_size for f in list(OUT.rglob("*")) + list(whl.rglob("*")) if f.is_file())
    print(f"prepared {OUT} and {whl}: {size / 2**20:.1f} MiB to carry")


if __name__ == "__main__":
    main()
