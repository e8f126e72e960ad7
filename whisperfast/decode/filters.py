"""Logit rules of openai-whisper as tensor operations (masks and `torch.where`, no host sync).

Order each step: suppress blank (first step), suppress tokens, timestamp rules (rows with timestamps on).
The constant parts are additive masks built once per model/options; the rest reads the decode state.

`timestamp_rules` is the form compiled code runs (every id compared with each row's bounds: a dozen passes over
[B, V]). `timestamp_rules_eager` is the same rule for eager CPU steps, where reading the state costs no sync:
each row's banned ranges are filled as slices, and the log-softmax the rule needed is handed back for the
token choice when no row was forced to a timestamp. Both give the same logits bit for bit
(tests/test_filters.py compares them on random states).
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


def banned_ranges(step: int, last: int, prev: int, max_ts: int, *, V: int, eot: int, ts_begin: int,
                  max_initial: int) -> tuple[int, int, int]:
    """One row's `timestamp_rules` bounds from host ints: (text_end, ts_end, late); banned ids are
    [0, text_end) ∪ [ts_begin, ts_end) ∪ [late, V) and <|notimestamps|>."""
    first = step == 0
    last_ts = step >= 1 and last >= ts_begin
    pen_ts = step < 2 or prev >= ts_begin
    text_end = ts_begin if first else (eot if last_ts and not pen_ts else 0)
    ts_end = V if last_ts and pen_ts else (max_ts if last_ts else max_ts + 1)
    late = ts_begin + max_initial + 1 if first else V
    return text_end, ts_end, late


def timestamp_rules_eager(logits: Tensor, step: int, last: list[int], prev: list[int], max_ts: list[int],
                          ts_on: list[bool], *, eot: int, no_ts: int, ts_begin: int,
                          max_initial: int) -> tuple[Tensor, Tensor | None]:
    """`timestamp_rules` for eager CPU code, in place on `logits` [B, V] (a tensor the caller owns), with the
    state read on the host -> (logits, their log-softmax if no row was forced to a timestamp, else None)."""
    rows = [r for r, on in enumerate(ts_on) if on]
    if not rows:
        return logits, None
    V = logits.shape[-1]
    for r in rows:
        text_end, ts_end, late = banned_ranges(step, last[r], prev[r], max_ts[r], V=V, eot=eot, ts_begin=ts_begin,
                                               max_initial=max_initial)
        row = logits[r]
        row[:text_end] = NEG_INF
        if ts_end > ts_begin:
            row[ts_begin:ts_end] = NEG_INF
        if late < V:
            row[late:] = NEG_INF
        row[no_ts] = NEG_INF
    logprobs = torch.log_softmax(logits, dim=-1)
    ts_mass = logprobs[:, ts_begin:].logsumexp(dim=-1).tolist()
    text_max = logprobs[:, :ts_begin].amax(dim=-1).tolist()
    forced = [r for r in rows if ts_mass[r] > text_max[r]]
    for r in forced:
        logits[r, :ts_begin] = NEG_INF
    return logits, None if forced else logprobs
