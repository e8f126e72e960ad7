"""The decode loop: encode a batch of windows, prefill the prompts, then one token per step.

Rows are independent: each has its own prompt (left-padded into a common prompt bucket), temperature and
timestamp mode, so fallback re-decodes and many files share one fixed batch without recompiling.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..model.whisper import Whisper
from ..tokenizer import Tokenizer
from .filters import additive_mask, begin_ids, suppressed_ids
from .step import (ACTIVE, META, PROMPT_CAPACITY, TIMESTAMPS, Session, compile_for, decode_one_greedy,
                   decode_one_sampling, encode, prefill)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CHECK_EVERY = 8  # steps between the loop's host checks of "all rows done" on CUDA


@dataclass(frozen=True)
class Row:
    prompt: tuple[int, ...]   # initial tokens: [<|startofprev|> + previous text] + sot sequence
    sot_index: int            # where <|startoftranscript|> is in `prompt`
    temperature: float = 0.0
    timestamps: bool = True
    seed: int = 0             # base seed of the sampling noise (the row's own seed also hashes its prompt)
    sample: int = 0           # which of a window's best_of samples (copies of one window draw apart)

    def noise_seed(self) -> int:
        """32 bits from (seed, temperature, prompt, sample): what the row decodes, not where it sits."""
        h = zlib.crc32(struct.pack(f"<qd{len(self.prompt)}q", self.seed, self.temperature, *self.prompt))
        return zlib.crc32(struct.pack("<q", self.sample), h) if self.sample else h


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
        self._compiled: dict[tuple, Callable] = {}
        self.beam_pools: dict[tuple, nn.Module] = {}  # (session id, K, size) -> beam.Beams

    def session(self, n: int, sample_len: int, group: int = 1) -> Session:
        """The session of n windows' bucket, `group` rows per window (beams or best_of samples)."""
        key = (bucket(n) * group, sample_len)
        if key not in self.sessions:
            self.sessions[key] = Session(self.model.decoder, self.model.config, self.tok, key[0], sample_len,
                                         dtype=self.dtype, device=self.device)
        return self.sessions[key]

    def compiled(self, fn: Callable, *key: int) -> Callable:
        """`fn` compiled for this model and shape key (see `step.compile_for`); `fn` itself when not compiling."""
        if not self.compile:
            return fn
        if (fn, *key) not in self._compiled:
            self._compiled[(fn, *key)] = compile_for(fn, self.device, *key)
        return self._compiled[(fn, *key)]

    def step_fn(self, sess: Session, sample: bool) -> Callable:
        """The per-token step of a session: the greedy variant, or the one that draws noise."""
        return self.compiled(decode_one_sampling if sample else decode_one_greedy, sess.batch, sess.sample_len)

    def masks(self, suppress_tokens, suppress_blank: bool) -> tuple[Tensor, Tensor]:
        key = (suppress_tokens if isinstance(suppress_tokens, (str, type(None))) else tuple(suppress_tokens),
               suppress_blank)
        if key not in self._masks:
            V = self.model.config.n_vocab
            ids = suppressed_ids(self.tok, self.model.config, suppress_tokens)
            self._masks[key] = (additive_mask(ids, V, self.device),
                                additive_mask(begin_ids(self.tok) if suppress_blank else [], V, self.device))
        return self._masks[key]

    def encode(self, mel: Tensor, sess: Session) -> None:
        """Encoder states of `mel` [n, n_mels, 3000] -> cross k/v of rows :n (once per window)."""
        mel = mel.to(self.device, self.dtype)
        encode(self.model, mel, sess.cache)  # eager: cuBLAS/SDPA-bound, and no compile time per bucket
        self.encoded = sess

    @torch.no_grad()
    def run(self, mel: Tensor | None, rows: list[Row | None], *, sample_len: int, suppress_tokens="-1",
            suppress_blank: bool = True, batch: int | None = None,
            repetition_guard: int | None = None, sess: Session | None = None) -> list[RowOutput | None]:
        """Decode one window per row; `None` rows sit idle (done from the start).

        mel: [n, n_mels, 3000] for the rows, or None to reuse the cross k/v already in the session (a
        fallback re-decode of some rows of the same windows). `batch` pins the bucket (default: n rows).
        repetition_guard: stop a row whose last N tokens loop one n-gram (checked at the host checks).
        `sess`: the session to run in (default: the bucket of `batch` or the rows)."""
        sess = sess or self.session(max(len(rows), batch or 0), sample_len)
        if mel is not None:
            self.encode(mel, sess)
        sample = any(r is not None and r.temperature > 0 for r in rows)
        n_steps = self.prefill(sess, rows, suppress_tokens, suppress_blank, sample)
        step = self.step_fn(sess, sample)
        every = CHECK_EVERY if self.device.type == "cuda" else 1  # reading a CPU tensor costs no sync
        for i in range(1, n_steps):
            if i % every == 0 and bool(sess.done.all()):  # the loop's only host sync
                break
            if repetition_guard and i % CHECK_EVERY == 0:
                stop_loops(sess, i, repetition_guard)
            step(self.model.decoder, sess)
        return self.readout(sess, rows)

    def pack(self, sess: Session, rows: list[Row | None]) -> tuple[Tensor, int]:
        """The rows' prompts (left-padded into a prompt bucket P) and per-row settings as one [B, P + META]
        long tensor on the host (what `step.prefill` unpacks on the device), and the largest token cap."""
        B, n_ctx = sess.batch, self.model.config.n_text_ctx
        idle = Row(prompt=(self.tok.eot,), sot_index=0)
        flags = [(ACTIVE if r else 0) | (TIMESTAMPS if r and r.timestamps else 0) for r in rows] + [0] * (B - len(rows))
        rows = [r or idle for r in rows] + [idle] * (B - len(rows))
        P = prompt_bucket(max(len(r.prompt) for r in rows))
        packed = torch.full((B, P + META), self.tok.eot, dtype=torch.long)
        for i, r in enumerate(rows):
            packed[i, P - len(r.prompt):P] = torch.tensor(r.prompt)
        offset = torch.tensor([P - len(r.prompt) for r in rows])
        caps = [min(sess.sample_len, n_ctx + 1 - len(r.prompt)) if f & ACTIVE else 1 for r, f in zip(rows, flags)]
        temps = torch.tensor([r.temperature for r in rows], dtype=torch.float32).view(torch.int32)
        packed[:, P:] = torch.stack([offset, offset + torch.tensor([r.sot_index for r in rows]), torch.tensor(caps),
                                     torch.tensor([r.noise_seed() for r in rows]), torch.tensor(flags),
                                     temps.long()], dim=1)
        return packed, max(caps)

    def prefill(self, sess: Session, rows: list[Row | None], suppress_tokens, suppress_blank: bool,
                sample: bool = True) -> int:
        """Write the prompts into the cache, reset the state, store no-speech, select the first token;
        -> the most tokens a row may take (known on the host: the loop starts without a sync)."""
        suppress, begin = self.masks(suppress_tokens, suppress_blank)
        sess.suppress.copy_(suppress)
        sess.begin.copy_(begin)
        packed, n_steps = self.pack(sess, rows)
        packed = packed.to(self.device)  # the window's one host -> device copy
        fn = prefill  # compiled on CUDA only: launch-bound there; on CPU a compile per prompt bucket costs more
        if self.device.type == "cuda":
            fn = self.compiled(prefill, sess.batch, sess.sample_len, packed.shape[1] - META)
        fn(self.model.decoder, sess, packed, sample or self.compile)  # compiled: one graph for all temperatures
        return n_steps

    def readout(self, sess: Session, rows: list[Row | None]) -> list[RowOutput | None]:
        n = len(rows)
        out, caps = sess.out[:n].cpu().tolist(), sess.cap[:n].cpu().tolist()
        lps, ns = sess.sum_logprob[:n].cpu().tolist(), sess.no_speech[:n].cpu().tolist()
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
