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

    Ids are ordered text [0, eot) < specials [eot, ts_begin) < timestamps [ts_begin, V), so each row's
    banned set is three id ranges plus <|notimestamps|>: [0, text_end) ∪ [ts_begin, ts_end) ∪ [late, V).
    """
    V = logits.shape[-1]
    first = step == 0
    last_ts = (step >= 1) & (last >= ts_begin)                   # [B]
    pen_ts = (step < 2) | (prev >= ts_begin)
    # text (and EOT) banned at the first step; text after a lone timestamp (its pair must close)
    text_end = torch.where(first, ts_begin, torch.where(last_ts & ~pen_ts, eot, 0))
    # timestamps: none right after a pair; otherwise non-decreasing, with a non-zero length after a pair
    ts_end = torch.where(last_ts & pen_ts, V, torch.where(last_ts & ~pen_ts, max_ts, max_ts + 1))
    late = torch.where(first, ts_begin + max_initial + 1, V)     # the first timestamp is <= max_initial
    v = vocab[None]
    m = (v < text_end[:, None]) | ((v >= ts_begin) & (v < ts_end[:, None])) | (v >= late) | (v == no_ts)
    logits = logits.masked_fill(m & ts_on[:, None], NEG_INF)
    logprobs = torch.log_softmax(logits, dim=-1)
    ts_mass = logprobs[:, ts_begin:].logsumexp(dim=-1)            # [B]
    text_max = logprobs[:, :ts_begin].amax(dim=-1)
    force = (ts_mass > text_max) & ts_on
    return logits.masked_fill(force[:, None] & (v < ts_begin), NEG_INF)
