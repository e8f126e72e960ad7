"""Rows of a session as the host describes them: a window's prompt and settings (`Row`), packed into the one
[B, P + META] long tensor that `step.prefill` unpacks on the device (`pack`), and what a row decoded
(`RowOutput`, read back by `readout` once per window)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..audio import TOKENS_PER_SECOND

from .step import ACTIVE, META, PROMPT_CAPACITY, TIMESTAMPS, Session


@dataclass(frozen=True)
class Row:
    prompt: tuple[int, ...]   # initial tokens: [<|startofprev|> + previous text] + sot sequence
    sot_index: int            # where <|startoftranscript|> is in `prompt`
    temperature: float = 0.0
    timestamps: bool = True
    seed: int = 0             # base seed of the sampling noise (the row's own seed also hashes its prompt)
    sample: int = 0           # which of a window's best_of samples (copies of one window draw apart)
    hold_eot: float | None = None  # seconds (<= 30): EOT is banned until a timestamp at or after it was sampled

    def noise_seed(self) -> int:
        """32 bits from (seed, temperature, prompt, sample): what the row decodes, not where it sits."""
        h = zlib.crc32(struct.pack(f"<qd{len(self.prompt)}q", self.seed, self.temperature, *self.prompt))
        return zlib.crc32(struct.pack("<q", self.sample), h) if self.sample else h


@dataclass
class RowOutput:
    tokens: list[int]         # sampled ids up to (excluding) EOT
    sum_logprob: float
    no_speech_prob: float


def prompt_bucket(n: int) -> int:
    return min(max(4, 1 << (n - 1).bit_length()), PROMPT_CAPACITY)


def left_pad(seqs: Sequence[Sequence[int]], fill: int) -> tuple[Tensor, Tensor]:
    """Sequences right-aligned in a [B, P] long tensor (P: the prompt bucket of the longest, or the longest
    when it is beyond the buckets) and each row's offset [B] (its padding: masked, positions shifted)."""
    P = max(prompt_bucket(n := max(len(s) for s in seqs)), n)
    tokens = torch.full((len(seqs), P), fill, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, P - len(s):] = torch.tensor(s, dtype=torch.long)
    return tokens, torch.tensor([P - len(s) for s in seqs])


def pack(sess: Session, rows: list[Row | None], n_text_ctx: int) -> tuple[Tensor, int]:
    """The rows' prompts (left-padded) and per-row settings as one [B, P + META] long tensor on the host,
    and the largest token cap (the loop's step count, known without a sync). `None` rows sit idle."""
    B = sess.batch
    idle = Row(prompt=(sess.eot,), sot_index=0)
    flags = [(ACTIVE if r else 0) | (TIMESTAMPS if r and r.timestamps else 0) for r in rows] + [0] * (B - len(rows))
    rows = [r or idle for r in rows] + [idle] * (B - len(rows))
    tokens, offset = left_pad([r.prompt for r in rows], sess.eot)
    caps = [min(sess.sample_len, n_text_ctx + 1 - len(r.prompt)) if f & ACTIVE else 1 for r, f in zip(rows, flags)]
    temps = torch.tensor([r.temperature for r in rows], dtype=torch.float32).view(torch.int32)
    holds = [sess.ts_begin + round(r.hold_eot * TOKENS_PER_SECOND) if r.hold_eot and f & TIMESTAMPS else 0
             for r, f in zip(rows, flags)]
    meta = torch.stack([offset, offset + torch.tensor([r.sot_index for r in rows]), torch.tensor(caps),
                        torch.tensor([r.noise_seed() for r in rows]), torch.tensor(flags), temps.long(),
                        torch.tensor(holds)], dim=1)
    assert meta.shape[1] == META
    return torch.cat([tokens, meta], dim=1), max(caps)


def readout(sess: Session, rows: list[Row | None]) -> list[RowOutput | None]:
    """Each active row's tokens (cut at its cap and at EOT), sum of log-probabilities and no-speech probability."""
    n = len(rows)
    out, caps = sess.out[:n].cpu().tolist(), sess.cap[:n].cpu().tolist()
    lps, ns = sess.sum_logprob[:n].cpu().tolist(), sess.no_speech[:n].cpu().tolist()
    results: list[RowOutput | None] = []
    for r, toks, cap, lp, p in zip(rows, out, caps, lps, ns):
        toks = toks[:cap]
        if sess.eot in toks:
            toks = toks[: toks.index(sess.eot)]
        results.append(RowOutput(tokens=toks, sum_logprob=lp, no_speech_prob=p) if r else None)
    return results
