"""The decode loop: encode a batch of windows, prefill the prompts, then one token per step.

Rows are independent: each has its own prompt (left-padded into a common prompt bucket), temperature and
timestamp mode, so fallback re-decodes and many files share one fixed batch without recompiling.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor

from ..model.whisper import Whisper
from ..tokenizer import Tokenizer
from .filters import additive_mask, begin_ids, suppressed_ids
from .step import PROMPT_CAPACITY, Session, compiled_step, select

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CHECK_EVERY = 8  # steps between the loop's host checks of "all rows done" on CUDA


@dataclass(frozen=True)
class Row:
    prompt: tuple[int, ...]   # initial tokens: [<|startofprev|> + previous text] + sot sequence
    sot_index: int            # where <|startoftranscript|> is in `prompt`
    temperature: float = 0.0
    timestamps: bool = True
    seed: int = 0             # base seed of the sampling noise (the row's own seed also hashes its prompt)

    def noise_seed(self) -> int:
        """32 bits from (seed, temperature, prompt): what the row decodes, not where it sits in the batch."""
        return zlib.crc32(struct.pack(f"<qd{len(self.prompt)}q", self.seed, self.temperature, *self.prompt))


@dataclass
class RowOutput:
    tokens: list[int]         # sampled ids up to (excluding) EOT
    sum_logprob: float
    no_speech_prob: float


def bucket(n: int, buckets=BATCH_BUCKETS) -> int:
    return next((b for b in buckets if b >= n), n)


def prompt_bucket(n: int) -> int:
    return min(max(4, 1 << (n - 1).bit_length()), PROMPT_CAPACITY)


class Engine:
    """A model + tokenizer with its sessions (one per batch bucket), reused across calls."""

    def __init__(self, model: Whisper, tok: Tokenizer, *, compile: bool | None = None):
        self.model, self.tok = model, tok
        self.device, self.dtype = model.device, model.dtype
        self.compile = (self.device.type == "cuda") if compile is None else bool(compile)
        self.sample_len = model.config.n_text_ctx // 2  # openai-whisper's cap on new tokens per window
        self.sessions: dict[tuple[int, int], Session] = {}
        self.encoded: Session | None = None  # the session whose cross k/v hold the last encoded windows
        self._masks: dict[tuple, tuple[Tensor, Tensor]] = {}
        self._encode = self._encode_eager
        if self.compile and self.device.type == "cuda":
            self._encode = torch.compile(self._encode_eager, fullgraph=True, dynamic=False)

    def session(self, n: int, sample_len: int) -> Session:
        key = (bucket(n), sample_len)
        if key not in self.sessions:
            self.sessions[key] = Session(self.model.decoder, self.model.config, self.tok, key[0], sample_len,
                                         dtype=self.dtype, device=self.device)
        return self.sessions[key]

    def masks(self, suppress_tokens, suppress_blank: bool) -> tuple[Tensor, Tensor]:
        key = (suppress_tokens if isinstance(suppress_tokens, (str, type(None))) else tuple(suppress_tokens),
               suppress_blank)
        if key not in self._masks:
            V = self.model.config.n_vocab
            ids = suppressed_ids(self.tok, self.model.config, suppress_tokens)
            self._masks[key] = (additive_mask(ids, V, self.device),
                                additive_mask(begin_ids(self.tok) if suppress_blank else [], V, self.device))
        return self._masks[key]

    def _encode_eager(self, mel: Tensor, sess: Session) -> None:
        self.model.decoder.fill_cross(self.model.encoder(mel), sess.cache)

    def encode(self, mel: Tensor, sess: Session) -> None:
        """Encoder states of `mel` [n, n_mels, 3000] -> cross k/v of rows :n (once per window)."""
        mel = mel.to(self.device, self.dtype)
        if self.compile and mel.shape[0] < sess.batch:  # compiled shapes are per bucket: pad the batch
            mel = torch.cat([mel, mel.new_zeros(sess.batch - mel.shape[0], *mel.shape[1:])])
        self._encode(mel, sess)
        self.encoded = sess

    @torch.no_grad()
    def run(self, mel: Tensor | None, rows: list[Row | None], *, sample_len: int, suppress_tokens="-1",
            suppress_blank: bool = True, batch: int | None = None,
            repetition_guard: int | None = None) -> list[RowOutput | None]:
        """Decode one window per row; `None` rows sit idle (done from the start).

        mel: [n, n_mels, 3000] for the rows, or None to reuse the cross k/v already in the session (a
        fallback re-decode of some rows of the same windows). `batch` pins the bucket (default: n rows).
        repetition_guard: stop a row whose last N tokens loop one n-gram (checked at the host checks).
        """
        sess = self.session(max(len(rows), batch or 0), sample_len)
        if mel is not None:
            self.encode(mel, sess)
        sample = any(r is not None and r.temperature > 0 for r in rows)
        no_speech = self.prefill(sess, rows, suppress_tokens, suppress_blank, sample)
        step = compiled_step(self.device, self.compile, sample)
        every = CHECK_EVERY if self.device.type == "cuda" else 1  # reading a CPU tensor costs no sync
        for i in range(1, int(sess.cap.max())):
            if i % every == 0 and bool(sess.done.all()):  # the loop's only host sync
                break
            if repetition_guard and i % CHECK_EVERY == 0:
                stop_loops(sess, i, repetition_guard)
            step(self.model.decoder, sess)
        return self.readout(sess, rows, no_speech)

    def prefill(self, sess: Session, rows: list[Row | None], suppress_tokens, suppress_blank: bool,
                sample: bool = True) -> Tensor:
        """Write the prompts into the cache, reset the state, select the first token; -> no-speech [B]."""
        B, n_ctx, dev = sess.batch, self.model.config.n_text_ctx, self.device
        idle = Row(prompt=(self.tok.eot,), sot_index=0)
        rows = [r or idle for r in rows] + [idle] * (B - len(rows))
        active = [r is not idle for r in rows]
        P = prompt_bucket(max(len(r.prompt) for r in rows))
        tokens = torch.full((B, P), self.tok.eot, dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, P - len(r.prompt):] = torch.tensor(r.prompt)
        offset = torch.tensor([P - len(r.prompt) for r in rows])
        sess.cache.offset.copy_(offset)
        h = self.model.decoder.hidden(tokens.to(dev), torch.arange(P, device=dev), sess.cache)  # [B, P, d]
        sot = offset + torch.tensor([r.sot_index for r in rows])
        no_speech = self.model.decoder.logits(h[torch.arange(B, device=dev), sot.to(dev)])
        no_speech = no_speech.softmax(dim=-1)[:, self.tok.no_speech]
        suppress, begin = self.masks(suppress_tokens, suppress_blank)
        sess.suppress.copy_(suppress)
        sess.begin.copy_(begin)
        sess.temperature.copy_(torch.tensor([r.temperature for r in rows]))
        sess.seed.copy_(torch.tensor([r.noise_seed() for r in rows]))
        sess.ts_on.copy_(torch.tensor([r.timestamps for r in rows]))
        sess.cap.copy_(torch.tensor([min(sess.sample_len, n_ctx + 1 - len(r.prompt)) if a else 1
                                     for r, a in zip(rows, active)]))
        sess.done.copy_(~torch.tensor(active))
        for t, v in ((sess.out, self.tok.eot), (sess.hist, 0), (sess.step, 0),
                     (sess.max_ts, self.tok.timestamp_begin - 1), (sess.sum_logprob, 0), (sess.pos, P)):
            t.fill_(v)
        select(sess, self.model.decoder.logits(h[:, -1]), sample)
        return no_speech

    def readout(self, sess: Session, rows: list[Row | None], no_speech: Tensor) -> list[RowOutput | None]:
        n = len(rows)
        out, caps = sess.out[:n].cpu().tolist(), sess.cap[:n].cpu().tolist()
        lps, ns = sess.sum_logprob[:n].cpu().tolist(), no_speech[:n].float().cpu().tolist()
        results: list[RowOutput | None] = []
        for r, toks, cap, lp, p in zip(rows, out, caps, lps, ns):
            toks = toks[:cap]
            if self.tok.eot in toks:
                toks = toks[: toks.index(self.tok.eot)]
            results.append(RowOutput(tokens=toks, sum_logprob=lp, no_speech_prob=p) if r else None)
        return results


def looping(tokens: list[int], span: int, max_period: int = 16) -> bool:
    """Whether the last `span` tokens are one n-gram (n <= max_period) repeated."""
    if len(tokens) < span:
        return False
    tail = tokens[-span:]
    return any(all(tail[i] == tail[i - p] for i in range(p, span)) for p in range(1, min(max_period, span // 2) + 1))


def stop_loops(sess: Session, step: int, span: int) -> None:
    """Mark rows that loop as done and cut them at `step` (a host check, every CHECK_EVERY steps)."""
    out, done = sess.out[:, :step].cpu().tolist(), sess.done.cpu().tolist()
    for b, (toks, d) in enumerate(zip(out, done)):
        if not d and looping(toks, span):
            sess.done[b] = True
            sess.cap[b] = step
