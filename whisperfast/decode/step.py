"""The per-token step, and the ONE place where it is compiled.

`Session` holds, at fixed addresses, everything a batch bucket's decode loop reads and writes: the static
k/v cache, the sampled tokens, the logit-rule state, the per-row temperature and the done mask.
`decode_one` is pure tensor code (no `.item()`, no Python branch on a tensor value), so on CUDA it is
captured once per bucket by `torch.compile(mode="reduce-overhead", fullgraph=True)` and replayed as a
CUDA graph with no host sync per token.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..model.config import ModelConfig
from ..model.decoder import Decoder
from ..tokenizer import Tokenizer
from .filters import timestamp_rules

PROMPT_CAPACITY = 256  # slots for the (left-padded) prompt: <|startofprev|> + 223 tokens + sot sequence
M32 = 0xFFFFFFFF


class Session(nn.Module):
    """Decode state of one batch bucket. Rows are independent; `done` rows only emit EOT."""

    def __init__(self, decoder: Decoder, config: ModelConfig, tok: Tokenizer, batch: int, sample_len: int,
                 *, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.eot, self.no_ts, self.ts_begin = tok.eot, tok.no_timestamps, tok.timestamp_begin
        self.max_initial = config.max_initial_timestamp_index
        self.sample_len = sample_len
        self.cache = decoder.new_cache(batch, PROMPT_CAPACITY + sample_len, config.n_audio_ctx,
                                       dtype=dtype, device=device)
        V = config.n_vocab

        def buf(name: str, *shape: int, dtype=torch.long, fill=0):
            self.register_buffer(name, torch.full(shape, fill, dtype=dtype, device=device), persistent=False)

        buf("out", batch, sample_len)                 # sampled ids [B, S]
        buf("hist", batch, 2)                         # [B, 2] the last two sampled ids (prev, last)
        for name in ("max_ts", "cap"):
            buf(name, batch)                          # [B]
        buf("done", batch, dtype=torch.bool)
        buf("ts_on", batch, dtype=torch.bool)
        buf("sum_logprob", batch, dtype=torch.float32)
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


def select(sess: Session, logits: Tensor, sample: bool = True) -> None:
    """Apply the logit rules to `logits` [B, V] (float32), pick a token per row, update the state.

    `sample` (a constant per compiled function, not a tensor): False when every row is greedy, which
    skips drawing the noise."""
    logits = logits + sess.suppress + torch.where(sess.step == 0, sess.begin, 0.0)
    logits = timestamp_rules(logits, sess.step, sess.hist[:, 1], sess.hist[:, 0], sess.max_ts, sess.ts_on, sess.vocab,
                             eot=sess.eot, no_ts=sess.no_ts, ts_begin=sess.ts_begin, max_initial=sess.max_initial)
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


def decode_one(decoder: Decoder, sess: Session, sample: bool = True) -> None:
    """Feed each row's last token at slot `pos`, then select the next one."""
    logits = decoder(sess.hist[:, 1:], sess.pos, sess.cache)[:, 0]  # [B, V]
    sess.pos.add_(1)
    select(sess, logits, sample)


def decode_one_greedy(decoder: Decoder, sess: Session) -> None:
    decode_one(decoder, sess, sample=False)


def decode_one_sampling(decoder: Decoder, sess: Session) -> None:
    decode_one(decoder, sess, sample=True)


_compiled: dict[tuple[str, bool], object] = {}


def compiled_step(device: torch.device, enabled: bool, sample: bool):
    """The step, compiled once per process, mode and variant (greedy / sampling): CUDA graphs on CUDA,
    inductor (mode "default") on CPU; eager when not `enabled`."""
    fn = decode_one_sampling if sample else decode_one_greedy
    if not enabled:
        return fn
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    if (mode, sample) not in _compiled:
        cfg = torch._dynamo.config
        cfg.cache_size_limit = max(cfg.cache_size_limit, 64)  # one graph per batch bucket
        _compiled[mode, sample] = torch.compile(fn, mode=mode, fullgraph=True, dynamic=False)
    return _compiled[mode, sample]
