"""Silero VAD v6 (16 kHz) as a plain nn.Module, and its per-frame speech probabilities, streamed.

The network is the one of the `silero-vad` package's `tinygrad_model.py`: a frame of 512 samples with 64
samples of context before it (576), reflect-padded by 64 on the right, an STFT as a strided convolution
(256 taps, hop 128: 4 columns of 129 magnitudes), four ReLU convolutions down to one 128-d vector, an LSTM
cell whose state runs across frames, and a 1x1 convolution + sigmoid. Here the per-frame part runs on a
block of frames at once and the cell as one `nn.LSTM` over the block (same gate layout, same weights).

Weights: `silero_vad_16k.safetensors` beside this file, the model of silero-vad 6.2.3 (MIT, Silero Team;
LICENSE.silero-vad beside it) as `python -m weights_tools import-silero-vad` writes it from the package's
`silero_vad.jit`, which is what silero's `load_silero_vad()` runs and agrees with its ONNX within 1e-5. (The
package's own `silero_vad_16k.safetensors` holds other weights: up to 0.4 apart in probability.) Shipped, not
read from an installed silero-vad at run time: the VAD is a runtime feature, silero-vad must stay a test
dependency only, and importing it calls `torch.set_num_threads(1)` for the whole process. 1.2 MB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHTS = Path(__file__).with_name("silero_vad_16k.safetensors")
FRAME = 512    # samples per probability (32 ms at 16 kHz)
CONTEXT = 64   # samples of the previous frame put before each frame
BLOCK = 2048   # frames per forward when streaming (65 s of audio; ~20 MB of activations)


class SileroVAD(nn.Module):
    def __init__(self):
        super().__init__()
        self.stft_conv = nn.Conv1d(1, 258, kernel_size=256, stride=128, bias=False)
        self.conv1 = nn.Conv1d(129, 128, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, kernel_size=3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, kernel_size=3, padding=1)
        self.lstm = nn.LSTM(128, 128)  # silero's LSTMCell, run over the frames of a block
        self.final_conv = nn.Conv1d(128, 1, kernel_size=1)

    def encode(self, frames: Tensor) -> Tensor:  # [N, 576] -> [N, 128]
        x = F.pad(frames[:, None], (0, CONTEXT), mode="reflect")  # [N, 1, 640]
        x = self.stft_conv(x)  # [N, 258, 4]: real and imaginary parts of 129 bins
        x = (x[:, :129].square() + x[:, 129:].square()).sqrt()  # [N, 129, 4]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = F.relu(conv(x))  # -> [N, 128, 4], [N, 64, 2], [N, 64, 1], [N, 128, 1]
        return x[:, :, 0]

    def forward(self, frames: Tensor, state: tuple[Tensor, Tensor] | None = None):
        """[N, 576] consecutive frames with their context -> speech probabilities [N], LSTM state ([1,1,128] x2)."""
        h, state = self.lstm(self.encode(frames)[:, None], state)  # [N, 1, 128]
        p = self.final_conv(F.relu(h).permute(1, 2, 0))  # [1, 1, N]
        return torch.sigmoid(p)[0, 0], state


def load_vad(device: str | torch.device = "cpu") -> SileroVAD:
    """The shipped Silero VAD v6 weights in a `SileroVAD` (eval mode, no grad needed)."""
    from safetensors.torch import load_file

    model = SileroVAD()
    model.load_state_dict(load_file(WEIGHTS), strict=True)
    return model.eval().requires_grad_(False).to(device)


_cached: dict[str, SileroVAD] = {}


def default_vad() -> SileroVAD:
    """One CPU model per process (1.2 MB), loaded on first use."""
    if "cpu" not in _cached:
        _cached["cpu"] = load_vad("cpu")
    return _cached["cpu"]


class ProbStream:
    """Speech probabilities of audio pushed in blocks of any size: frame i covers samples
    [512 i, 512 i + 512) with the 64 samples before it as context (zeros before the start), the LSTM
    state carried from frame to frame; the last partial frame is zero-padded (silero's convention).
    Memory is O(block) whatever the length."""

    def __init__(self, model: SileroVAD | None = None, block: int = BLOCK):
        self.model, self.block = model or default_vad(), block
        self.buf = torch.zeros(CONTEXT + block * FRAME)  # context + up to a block of samples
        self.fill = CONTEXT
        self.state: tuple[Tensor, Tensor] | None = None

    def push(self, x: np.ndarray | Tensor) -> np.ndarray:  # [n] float samples at 16 kHz -> [frames completed]
        x = torch.as_tensor(x, dtype=torch.float32)
        out, i = [], 0
        while i < len(x):
            take = min(len(x) - i, len(self.buf) - self.fill)
            self.buf[self.fill: self.fill + take] = x[i: i + take]
            self.fill, i = self.fill + take, i + take
            if self.fill == len(self.buf):
                out.append(self._run(self.block))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def finish(self) -> np.ndarray:
        """The probabilities of the frames still held (the last one zero-padded)."""
        n = -(-(self.fill - CONTEXT) // FRAME)
        self.buf[self.fill: CONTEXT + n * FRAME] = 0
        return self._run(n) if n else np.zeros(0, np.float32)

    @torch.inference_mode()
    def _run(self, n: int) -> np.ndarray:
        body = self.buf[CONTEXT: CONTEXT + n * FRAME].view(n, FRAME)  # [n, 512]
        before = self.buf[: n * FRAME].view(n, FRAME)[:, :CONTEXT]  # [n, 64]: the samples before each frame
        probs, self.state = self.model(torch.cat([before, body], 1), self.state)
        self.buf[:CONTEXT] = self.buf[n * FRAME: n * FRAME + CONTEXT].clone()  # the next frame's context
        self.fill = CONTEXT
        return probs.numpy().astype(np.float32, copy=False)


def speech_probs(audio: np.ndarray | Tensor, model: SileroVAD | None = None, block: int = BLOCK) -> np.ndarray:
    """[n] float32 samples at 16 kHz -> [ceil(n / 512)] speech probabilities (silero's own, within 1e-4)."""
    s = ProbStream(model, block)
    return np.concatenate([s.push(audio), s.finish()])
