"""The window's prefill, the per-token step, and every `torch.compile` call of the package (`compile_for`).

`Session` holds, at fixed addresses, everything a batch bucket's decode loop reads and writes: the static
k/v cache, the sampled tokens, the logit-rule state, the per-row temperature, the done mask and the
no-speech probabilities. `prefill` and `decode_one` are pure tensor code (no `.item()`, no Python branch on
a tensor value) that mutate the session and return nothing, so on CUDA each is captured by
`torch.compile(mode="reduce-overhead", fullgraph=True)` and replayed as a CUDA graph with no host sync.

What is compiled, and why (all through `compile_for`, one code object per model and shape key, so a new
bucket is a first compile and never a recompile):
  decode_one_greedy / decode_one_sampling   per session (batch bucket x rows per window): the per-token step
  prefill                                   per session x prompt bucket, CUDA only: once per window,
                                            but ~40 kernels per layer are launch-bound at batch 1 in eager
  beam.beam_step, beam.reorder,             per batch bucket x beam size x pool size (+ prompt bucket, CUDA
  beam.beam_prefill                         only, for the prefill; + slot bound 32, 64 ... for the reorder):
                                            the step with the beam update, then the self k/v of the slots
                                            written so far following the beams (two graphs: see reorder)
Not compiled: `encode` (the encoder + cross k/v fill, once per window, cuBLAS/SDPA-bound; its time is in
bench/gpu_throughput.py's breakdown).
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..model.config import ModelConfig
from ..cache import StaticKVCache
from ..model.decoder import Decoder
from ..model.whisper import Whisper
from ..tokenizer import Tokenizer
from .filters import NEG_INF, timestamp_rules, timestamp_rules_eager

PROMPT_CAPACITY = 256  # slots for the (left-padded) prompt: <|startofprev|> + 223 tokens + sot sequence
M32 = 0xFFFFFFFF
META = 7  # columns after the prompt in a packed prefill row: offset, sot slot, cap, seed, flags, temperature,
          # and the timestamp id before which EOT is banned (0: never)
ACTIVE, TIMESTAMPS = 1, 2  # flag bits
ROW_STATE = ("out", "hist", "max_ts", "eot_ts", "cap", "done", "ts_on", "sum_logprob", "no_speech", "temperature",
             "seed")  # the per-row buffers of a Session (compaction moves them; `Session.head` views them)


class Session(nn.Module):
    """Decode state of one batch bucket. Rows are independent; `done` rows only emit EOT."""

    def __init__(self, decoder: Decoder, config: ModelConfig, tok: Tokenizer, batch: int, sample_len: int,
                 *, dtype: torch.dtype, device: torch.device, group: int = 1):
        super().__init__()
        self.eot, self.no_ts, self.ts_begin, self.no_speech_id = tok.eot, tok.no_timestamps, tok.timestamp_begin, \
            tok.no_speech
        self.max_initial = config.max_initial_timestamp_index
        self.sample_len, self.group = sample_len, group  # group: rows per window (cross k/v held once each)
        self.cache = decoder.new_cache(batch, PROMPT_CAPACITY + sample_len, config.n_audio_ctx,
                                       dtype=dtype, device=device, group=group)
        V = config.n_vocab

        def buf(name: str, *shape: int, dtype=torch.long, fill=0):
            self.register_buffer(name, torch.full(shape, fill, dtype=dtype, device=device), persistent=False)

        buf("out", batch, sample_len)                 # sampled ids [B, S]
        buf("hist", batch, 2)                         # [B, 2] the last two sampled ids (prev, last)
        for name in ("max_ts", "cap"):
            buf(name, batch)                          # [B]
        buf("eot_ts", batch)                          # [B] EOT is banned while max_ts < eot_ts (Row.hold_eot)
        buf("done", batch, dtype=torch.bool)
        buf("ts_on", batch, dtype=torch.bool)
        buf("sum_logprob", batch, dtype=torch.float32)
        buf("no_speech", batch, dtype=torch.float32)  # [B] P(<|nospeech|>) at each row's sot
        buf("temperature", batch, dtype=torch.float32)
        buf("seed", batch)                            # [B] 32-bit seed of each row's sampling noise
        buf("step", dtype=torch.long)                 # [] tokens sampled so far
        buf("pos", 1)                                 # [1] cache slot of the token fed next
        buf("suppress", V, dtype=torch.float32)       # additive masks: 0 or -inf
        buf("begin", V, dtype=torch.float32)
        self.register_buffer("vocab", torch.arange(V, device=device), persistent=False)
        self.register_buffer("vocab_key", mulmod32(self.vocab, 0x9E3779B9), persistent=False)
        for t in self.buffers():
            torch._dynamo.mark_static_address(t)

    @property
    def batch(self) -> int:
        return self.out.shape[0]

    def head(self, k: int) -> Session:
        """Rows :k of this session as a session of k rows over the same storage (eager code only: compiled
        code keeps its bucket's shapes). A batch of k windows in a bigger bucket then never steps the idle
        rows: on CPU each would cost its cross k/v read, 4.6 MB per layer for tiny."""
        if k >= self.batch or self.group != 1:
            return self
        view = copy.copy(self)
        view._buffers = {n: b[:k] if n in ROW_STATE else b for n, b in self._buffers.items()}
        view._modules = {**self._modules, "cache": self.cache.head(k)}
        return view


def select(sess: Session, logits: Tensor, sample: bool = True) -> None:
    """Apply the logit rules to `logits` [B, V] (float32), pick a token per row, update the state.

    `sample` (a constant per compiled function, not a tensor): False when every row is greedy, which
    skips drawing the noise."""
    logits, logprobs = rules_logprobs(sess, logits)
    if logprobs is None:
        logprobs = torch.log_softmax(logits, dim=-1)
    tok = draw(logits, sess.temperature, sess.seed, sess.step, sess.vocab_key) if sample else logits.argmax(dim=-1)
    tok = torch.where(sess.done, sess.eot, tok)                                  # [B]
    lp = logprobs.gather(1, tok[:, None])[:, 0]
    sess.sum_logprob.add_(torch.where(sess.done, 0.0, lp))
    sess.out.index_copy_(1, sess.step.view(1), tok[:, None])
    # one write of a fresh tensor: copying `last` into `prev` and then `tok` into `last` as two in-place
    # ops was reordered by inductor (prev received the new token) in torch 2.13
    sess.hist.copy_(torch.stack([sess.hist[:, 1], tok], dim=1))
    sess.max_ts.copy_(torch.where(tok >= sess.ts_begin, tok, sess.max_ts))
    sess.done.copy_(sess.done | (tok == sess.eot) | (sess.step + 1 >= sess.cap))
    sess.step.add_(1)


def rules_logprobs(sess: Session, logits: Tensor) -> tuple[Tensor, Tensor | None]:
    """openai-whisper's logit filters in its order (suppress blank at the first step, suppress tokens,
    timestamps) on `logits` [B, V] float32 -> (logits with -inf where banned, their log-softmax when it was
    computed on the way, else None). Eager CPU code runs `host_rules` (the state read on the host, id ranges
    banned as slices), everything else (compiled code, CUDA) `tensor_rules`, which never syncs. Both give the
    same logits bit for bit (tests/test_filters.py)."""
    if logits.device.type == "cpu" and not torch.compiler.is_compiling():
        return host_rules(sess, logits)
    return tensor_rules(sess, logits), None


def tensor_rules(sess: Session, logits: Tensor) -> Tensor:
    logits = logits + sess.suppress + torch.where(sess.step == 0, sess.begin, 0.0)
    logits[:, sess.eot] = torch.where(sess.max_ts < sess.eot_ts, NEG_INF, logits[:, sess.eot])  # Row.hold_eot
    return timestamp_rules(logits, sess.step, sess.hist[:, 1], sess.hist[:, 0], sess.max_ts, sess.ts_on, sess.vocab,
                           eot=sess.eot, no_ts=sess.no_ts, ts_begin=sess.ts_begin, max_initial=sess.max_initial)


def host_rules(sess: Session, logits: Tensor) -> tuple[Tensor, Tensor | None]:
    """`tensor_rules` with a dozen fewer passes over [B, V] (CPU tensors: reading them costs no sync); -> also
    the log-softmax of the result when no row was forced to a timestamp (select and the beam update reuse it)."""
    step = int(sess.step)
    logits = logits + sess.suppress                                            # a fresh tensor: filled in place
    if step == 0:
        logits += sess.begin
    hist, max_ts = sess.hist.tolist(), sess.max_ts.tolist()
    for r, (m, hold) in enumerate(zip(max_ts, sess.eot_ts.tolist())):
        if m < hold:                                                          # Row.hold_eot
            logits[r, sess.eot] = NEG_INF
    return timestamp_rules_eager(logits, step, [h[1] for h in hist], [h[0] for h in hist], max_ts,
                                 sess.ts_on.tolist(), eot=sess.eot, no_ts=sess.no_ts, ts_begin=sess.ts_begin,
                                 max_initial=sess.max_initial)


def mulmod32(x: Tensor, c: int) -> Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32) as int64 without overflow (products stay below 2**49)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & M32


def mix32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (Wellons' lowbias32) of x in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = mulmod32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = mulmod32(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniform_noise(seed: Tensor, step: Tensor, vocab_key: Tensor) -> Tensor:  # [B], [], [V] -> [B, V] in (0, 1)
    """Counter-based noise: a hash of (row seed, step, token id). A row's draws depend on nothing else —
    not its batch slot, the other rows or an RNG state — so sampling gives the same tokens at any batch
    size, and a CUDA-graph replay needs no RNG offsets."""
    row = mix32((seed ^ mulmod32(step + 1, 0x85EBCA6B)) & M32)            # [B]
    x = mix32(row[:, None] ^ vocab_key[None])                             # [B, V]
    return ((x >> 8).float() + 0.5) * 2.0 ** -24


def draw(logits: Tensor, t: Tensor, seed: Tensor, step: Tensor, vocab_key: Tensor) -> Tensor:  # -> [B]
    """A sample of softmax(logits / t) per row, without a host sync: argmax(p / E) with E ~ Exp(1) is a
    draw from p (the exponential race), taken in log space. Rows with t == 0 get an argmax."""
    E = -torch.log(uniform_noise(seed, step, vocab_key))                  # [B, V]
    race = (logits / torch.where(t > 0, t, 1.0)[:, None] - torch.log(E)).argmax(dim=-1)
    return torch.where(t > 0, race, logits.argmax(dim=-1))


def prefill(decoder: Decoder, sess: Session, packed: Tensor, sample: bool = True) -> None:
    """A window's first pass from one packed [B, P + META] long tensor (one host -> device copy per window):
    each row's left-padded prompt, then its offset, sot slot, token cap, noise seed, flags, temperature
    (float32 bits) and EOT hold (a timestamp id). Resets the state, writes the prompts into the cache, stores
    the no-speech probability and selects the first token."""
    select(sess, prompt_logits(decoder, sess, packed), sample)


def prompt_logits(decoder: Decoder, sess: Session, packed: Tensor) -> Tensor:  # -> [B, V] float32
    """`prefill` up to the logits of each row's last prompt token (the state reset, no-speech stored)."""
    P = packed.shape[1] - META
    tokens, (offset, sot, cap, seed, flags, tbits, eot_ts) = packed[:, :P], packed[:, P:].unbind(1)  # [B, P], 7 x [B]
    sess.cache.offset.copy_(offset)
    sess.cap.copy_(cap)
    sess.seed.copy_(seed)
    sess.done.copy_((flags & ACTIVE) == 0)
    sess.ts_on.copy_((flags & TIMESTAMPS) != 0)
    sess.temperature.copy_(tbits.to(torch.int32).view(torch.float32))
    sess.eot_ts.copy_(eot_ts)
    sess.out.fill_(sess.eot)
    sess.hist.zero_()
    sess.step.zero_()
    sess.max_ts.fill_(sess.ts_begin - 1)
    sess.sum_logprob.zero_()
    sess.pos.fill_(P)
    h = decoder.hidden(tokens, torch.arange(P, device=packed.device), sess.cache)    # [B, P, d]
    at_sot = h.gather(1, sot[:, None, None].expand(-1, 1, h.shape[-1]))[:, 0]        # [B, d]
    sess.no_speech.copy_(decoder.logits(at_sot).softmax(dim=-1)[:, sess.no_speech_id])
    return decoder.logits(h[:, -1])


def encode(model: Whisper, mel: Tensor, cache: StaticKVCache) -> None:
    """Encoder states of `mel` [n, n_mels, 3000] -> cross k/v of rows :n of `cache`."""
    model.decoder.fill_cross(model.encoder(mel), cache)


def decode_one(decoder: Decoder, sess: Session, sample: bool = True) -> None:
    """Feed each row's last token at slot `pos`, then select the next one."""
    select(sess, next_logits(decoder, sess), sample)


def next_logits(decoder: Decoder, sess: Session) -> Tensor:  # -> [B, V] float32
    """Feed each row's last token at slot `pos` (and move `pos` on)."""
    logits = decoder(sess.hist[:, 1:], sess.pos, sess.cache)[:, 0]  # [B, V]
    sess.pos.add_(1)
    return logits


def decode_one_greedy(decoder: Decoder, sess: Session) -> None:
    decode_one(decoder, sess, sample=False)


def decode_one_sampling(decoder: Decoder, sess: Session) -> None:
    decode_one(decoder, sess, sample=True)


def compile_for(fn: Callable, device: torch.device, *key) -> Callable:
    """`fn` compiled for one shape `key` (e.g. batch bucket, prompt bucket): CUDA graphs on CUDA
    (`reduce-overhead`), inductor (mode "default") elsewhere; `fullgraph`, static shapes.

    Each call compiles its own copy of `fn`'s code object: dynamo keeps compiled code per code object, so a
    second bucket (or a second model) on one code object would be a recompile and count against its cache
    limit. The owner (`Engine.compiled`) keeps one per model and key: every compile is a first compile,
    and `error_on_recompile` catches only real recompiles."""
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    name = "_".join([fn.__name__, *map(str, key)])
    copy = types.FunctionType(fn.__code__.replace(co_name=name), fn.__globals__, name, fn.__defaults__,
                              fn.__closure__)
    return torch.compile(copy, mode=mode, fullgraph=True, dynamic=False)
