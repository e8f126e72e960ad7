"""The Whisper network: `encoder` + `decoder`, parameter paths as in HF checkpoints minus `model.`."""

from __future__ import annotations

from torch import Tensor, nn

from .config import ModelConfig
from .decoder import Decoder
from .encoder import Encoder


class Whisper(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def forward(self, mel: Tensor) -> Tensor:  # [B, n_mels, 3000] -> [B, 1500, d]
        return self.encoder(mel)

    @property
    def dtype(self):
        return self.decoder.embed_tokens.weight.dtype

    @property
    def device(self):
        return self.decoder.embed_tokens.weight.device
