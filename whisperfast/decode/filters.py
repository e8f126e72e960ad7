"""Logit rules of openai-whisper as tensor operations (masks and `torch.where`, no host sync).

Order each step: suppress blank (first step), suppress tokens, timestamp rules (rows with timestamps on).
The constant parts are additive masks built once per model/options; the rest reads the decode state.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import OptionError
from ..model.config import ModelConfig
from .options import parse_suppress
from ..tokenizer import Tokenizer

NEG_INF = float("-inf")


def suppressed_ids(tok: Tokenizer, config: ModelConfig, suppress_tokens) -> list[int]:
    """The ids masked at every step: the requested list ('-1' = the checkpoint's / non-speech) + specials."""
    ids = set(parse_suppress(suppress_tokens))
    bad = sorted(i for i in ids if i != -1 and not 0 <= i < config.n_vocab)
    if bad:
        raise OptionError(f"suppress_tokens {bad} are outside this vocabulary (0 .. {config.n_vocab - 1})")
    if -1 in ids:
        ids.discard(-1)
        ids |= set(config.suppress_tokens) if config.suppress_tokens else set(tok.non_speech_tokens)
    ids |= set(tok.special_suppress)
    return sorted(ids)


def additive_mask(ids: list[int], n_vocab: int, device) -> Tensor:  # -> [V] float32: 0 or -inf
    m = torch.zeros(n_vocab, dtype=torch.float32, device=device)
    if ids:
        m[torch.tensor(ids, device=device)] = NEG_INF
    return m


def begin_ids(tok: Tokenizer) -> list[int]:
    """Suppress blank: ' ' and EOT may not be the first sampled token."""
    return tok.encode(" ") + [tok.eot]


def timestamp_rules(logits: Tensor, step: Tensor, last: Tensor, prev: Tensor, max_ts: Tensor,
                    ts_on: Tensor, vocab: Tensor, *, eot: int, no_ts: int, ts_begin: int,
                    max_initial: int) -> Tensor:
    """openai-whisper's ApplyTimestampRules on logits [B, V] (float32), for rows where `ts_on`.

    step: [] sampled so far; last/prev: [B] the last two sampled ids (valid when step >= 1 / 2);
    max_ts: [B] the last timestamp id sampled (ts_begin - 1 if none; timestamps never decrease).
    """
    is_ts = (vocab >= ts_begin)[None]                       # [1, V]
    text = (vocab < ts_begin)[None]
    last_ts = (step >= 1) & (last >= ts_begin)              # [B]
    pen_ts = (step < 2) | (prev >= ts_begin)
    m = (vocab == no_ts)[None]
    m = m | ((last_ts & pen_ts)[:, None] & is_ts)           # a pair just closed: text (or EOT) next
    m = m | ((last_ts & ~pen_ts)[:, None] & (vocab < eot)[None])  # a lone timestamp: no text next
    lower = torch.where(last_ts & ~pen_ts, max_ts, max_ts + 1)    # non-decreasing, non-zero length
    m = m | (is_ts & (vocab[None] < lower[:, None]))
    first = (step == 0) & (text | (vocab > ts_begin + max_initial)[None])
    m = (m | first) & ts_on[:, None]
    logits = logits.masked_fill(m, NEG_INF)
    logprobs = torch.log_softmax(logits, dim=-1)
    ts_mass = logprobs[:, ts_begin:].logsumexp(dim=-1)      # [B]
    text_max = logprobs[:, :ts_begin].max(dim=-1).values
    force = (ts_mass > text_max) & ts_on
    return logits.masked_fill(force[:, None] & text, NEG_INF)
