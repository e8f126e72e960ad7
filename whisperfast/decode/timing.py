"""Word timestamps by openai-whisper's method (timing.py): cross-attention of the alignment heads,
standardised, median-filtered, averaged, then DTW from tokens to audio frames.

The alignment pass is one decoder forward (`Decoder.hidden_and_cross`) over `sot_sequence +
<|notimestamps|> + text + EOT`, left-padded as the prefill pads prompts, that also returns the
cross-attention logits of the alignment heads; generation itself keeps SDPA and CUDA graphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import TOKENS_PER_SECOND
from .rows import left_pad
from .step import Session

if TYPE_CHECKING:
    from .engine import Engine


@dataclass
class WordTiming:
    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over the last axis with reflect padding (x: [..., n])."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    shape = x.shape
    y = F.pad(x.reshape(-1, 1, shape[-1]), (pad, pad), mode="reflect")
    return y.unfold(-1, width, 1).sort()[0][..., pad].reshape(shape)


def dtw(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotonic alignment path of cost matrix x [N, M] (openai-whisper's dtw_cpu, by anti-diagonals)."""
    N, M = x.shape
    cost = np.full((N + 1, M + 1), np.inf, dtype=np.float32)
    trace = np.full((N + 1, M + 1), -1, dtype=np.int8)
    cost[0, 0] = 0
    for d in range(2, N + M + 1):  # cells with i + j == d depend on diagonals d-1 and d-2 only
        i = np.arange(max(1, d - M), min(N, d - 1) + 1)
        j = d - i
        c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
        t = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2))
        c = np.where(t == 0, c0, np.where(t == 1, c1, c2))
        cost[i, j] = x[i - 1, j - 1] + c.astype(np.float64)
        trace[i, j] = t
    trace[0, :], trace[:, 0] = 2, 1
    i, j, path = N, M, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        i, j = (i - 1, j - 1) if t == 0 else (i - 1, j) if t == 1 else (i, j - 1)
    path = np.array(path[::-1])
    return path[:, 0], path[:, 1]


@torch.no_grad()
def alignment_weights(engine: Engine, sess: Session, seqs: list[list[int] | None]) -> tuple[list, list]:
    """Per row: cross-attention logits of the alignment heads [heads, T, n_audio_ctx] and the logits
    [T, V] of its sequence, from one batched decoder forward against the rows' cached cross k/v."""
    dec, cfg, dev = engine.model.decoder, engine.model.config, engine.device
    L, H = len(dec.layers), cfg.n_text_head  # default: every head of the last half of the layers
    heads = sorted((layer, h) for layer, h in cfg.alignment_heads if 0 <= layer < L and 0 <= h < H)
    heads = heads or [(layer, h) for layer in range(L // 2, L) for h in range(H)]  # none given, or none valid
    filled = [s if s else [engine.tok.eot] for s in seqs] + [[engine.tok.eot]] * (sess.batch - len(seqs))
    tokens, offset = left_pad(filled, engine.tok.eot)  # as the prefill: padding masked, positions shifted
    sess.cache.offset.copy_(offset)
    h, qks = dec.hidden_and_cross(tokens.to(dev), torch.arange(tokens.shape[1], device=dev), sess.cache, heads)
    logits = dec.logits(h)  # [B, P, V]
    qk = torch.stack(qks, dim=1)  # [B, heads, P, S]
    return ([qk[b, :, int(offset[b]):].cpu() if seqs[b] else None for b in range(len(seqs))],
            [logits[b, int(offset[b]):].cpu() if seqs[b] else None for b in range(len(seqs))])


def find_alignment(tok, text: list[int], n_sot: int, qk: torch.Tensor, logits: torch.Tensor, num_frames: int,
                   language: str | None, medfilt_width: int = 7) -> list[WordTiming]:
    """openai-whisper's find_alignment for one row, from `alignment_weights` output."""
    if not text:
        return []
    probs = logits[n_sot:, : tok.eot].softmax(dim=-1)
    text_probs = probs[torch.arange(len(text)), torch.tensor(text)].tolist()
    w = qk[:, :, : num_frames // 2].softmax(dim=-1)
    std, mean = torch.std_mean(w, dim=-2, keepdim=True, unbiased=False)
    w = median_filter((w - mean) / std, medfilt_width)
    matrix = w.mean(dim=0)[n_sot:-1]
    text_idx, time_idx = dtw(-matrix.double().numpy())
    words, word_tokens = tok.split_to_word_tokens(text + [tok.eot], language)
    if len(word_tokens) <= 1:
        return []
    bounds = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
    jump_times = time_idx[jumps] / TOKENS_PER_SECOND
    starts, ends = jump_times[bounds[:-1]], jump_times[bounds[1:]]
    return [WordTiming(w, t, float(s), float(e), float(np.mean(text_probs[i:j])))
            for w, t, s, e, i, j in zip(words, word_tokens, starts, ends, bounds[:-1], bounds[1:])]


def merge_punctuations(alignment: list[WordTiming], prepended: str, appended: str) -> None:
    i, j = len(alignment) - 2, len(alignment) - 1
    while i >= 0:
        prev, nxt = alignment[i], alignment[j]
        if prev.word.startswith(" ") and prev.word.strip() in prepended:
            nxt.word, nxt.tokens = prev.word + nxt.word, prev.tokens + nxt.tokens
            prev.word, prev.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(alignment):
        prev, nxt = alignment[i], alignment[j]
        if not prev.word.endswith(" ") and nxt.word in appended:
            prev.word, prev.tokens = prev.word + nxt.word, prev.tokens + nxt.tokens
            nxt.word, nxt.tokens = "", []
        else:
            i = j
        j += 1
