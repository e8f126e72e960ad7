"""Audio encoder: log-mel [B, n_mels, 3000] -> states [B, 1500, d]."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .layers import Attention, LayerNorm, mlp


class EncoderLayer(nn.Module):
    def __init__(self, d: int, n_head: int, ffn: int):
        super().__init__()
        self.self_attn = Attention(d, n_head)
        self.self_attn_layer_norm = LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.final_layer_norm = LayerNorm(d)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.self_attn.full(self.self_attn_layer_norm(x))
        return x + mlp(self.fc1, self.fc2, self.final_layer_norm(x))


class Encoder(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.conv1 = nn.Conv1d(c.n_mels, c.n_audio_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(c.n_audio_state, c.n_audio_state, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(c.n_audio_ctx, c.n_audio_state)
        self.layers = nn.ModuleList(
            EncoderLayer(c.n_audio_state, c.n_audio_head, c.n_audio_ffn) for _ in range(c.n_audio_layer))
        self.layer_norm = LayerNorm(c.n_audio_state)

    def forward(self, mel: Tensor) -> Tensor:  # [B, n_mels, 2*n_audio_ctx] -> [B, n_audio_ctx, d]
        x = F.gelu(self.conv1(mel.to(self.conv1.weight.dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # [B, T, d]
        x = x + self.embed_positions.weight[: x.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)
