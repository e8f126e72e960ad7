"""Silero VAD v6 weights from an installed `silero-vad` package -> whisperfast/vad/silero_vad_16k.safetensors.

The package's own `silero_vad_16k.safetensors` holds other weights than the model it runs: its speech
probabilities differ from the package's `silero_vad.jit` / `silero_vad.onnx` (which agree within 1e-5) by up
to 0.4 on tests/data/jfk.flac. So the weights are taken from the JIT model, the one `load_silero_vad()` returns,
without importing silero_vad's Python code (that calls torch.set_num_threads(1)).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import torch

from .errors import WeightsToolError

# our parameter name -> the JIT model's 16 kHz state-dict key
RENAMES = {"stft_conv.weight": "_model.stft.forward_basis_buffer",
           **{f"conv{i + 1}.{w}": f"_model.encoder.{i}.reparam_conv.{w}" for i in range(4) for w in ("weight", "bias")},
           **{f"lstm.{w}_l0": f"_model.decoder.rnn.{w}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
           "final_conv.weight": "_model.decoder.decoder.2.weight", "final_conv.bias": "_model.decoder.decoder.2.bias"}


def silero_jit_path() -> Path:
    try:
        dist = metadata.distribution("silero-vad")
    except metadata.PackageNotFoundError:
        raise WeightsToolError("silero-vad is not installed: pip install silero-vad") from None
    path = Path(dist.locate_file("silero_vad/data/silero_vad.jit"))
    if not path.is_file():
        raise WeightsToolError(f"silero-vad {dist.version} has no {path}")
    return path


def silero_state_dict(jit_path: Path | None = None) -> dict[str, torch.Tensor]:
    """The 16 kHz model's tensors under whisperfast's names (SileroVAD in whisperfast/vad/model.py)."""
    sd = torch.jit.load(str(jit_path or silero_jit_path()), map_location="cpu").state_dict()
    return {ours: sd[theirs].float().contiguous().clone() for ours, theirs in RENAMES.items()}


def import_silero_vad(dst: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import save_file

    sd = silero_state_dict()
    version = metadata.version("silero-vad")
    save_file(sd, str(dst), metadata={"source": f"silero-vad {version} silero_vad.jit (MIT, Silero Team)"})
    return sd
