"""Windows of 30 s, one per row: prompts -> decode loop -> DecodingResult, with temperature fallback.

The batch is fixed: rows that need a fallback are re-decoded at the next temperature in the same
session (the others sit idle), reusing the cross k/v of their windows, so nothing is re-encoded and a
compiled bucket is reused. Each temperature decodes with `options.at_temperature(t)` (whisper.transcribe's
decode_with_fallback): K beams at T = 0, best_of samples at T > 0, each a group of rows per window in a
session of bucket x group rows, whose cross k/v are copied from the encoded rows (`regroup`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import Tensor

from ..errors import OptionError
from .beam import best, run_beams
from .engine import Engine, Row, RowOutput
from .step import Session
from .language import detect_language
from .options import DecodingOptions, DecodingResult, compression_ratio


def prompt_tokens(engine: Engine, prompt: str | Sequence[int] | None) -> list[int]:
    """`[<|startofprev|>] + previous tokens[-(n_text_ctx // 2 - 1):]`, or [] without a prompt."""
    if prompt is None or len(prompt) == 0:
        return []
    ids = engine.tok.encode(" " + prompt.strip()) if isinstance(prompt, str) else list(prompt)
    return [engine.tok.sot_prev] + ids[-(engine.model.config.n_text_ctx // 2 - 1):]


def make_result(engine: Engine, out: RowOutput, temperature: float, language: str) -> DecodingResult:
    text = engine.tok.decode(out.tokens).strip()
    return DecodingResult(
        tokens=out.tokens, text=text, language=language, avg_logprob=out.sum_logprob / (len(out.tokens) + 1),
        sum_logprob=out.sum_logprob, compression_ratio=compression_ratio(text),
        no_speech_prob=out.no_speech_prob, temperature=temperature)


def resolve_languages(engine: Engine, sess, n: int, langs: list[str | None]) -> tuple[list[str], list]:
    """The language of each row: given, else detected (multilingual), else English (.en)."""
    probs: list[dict | None] = [None] * n
    if not engine.tok.multilingual:
        if any(lang not in (None, "en") for lang in langs):
            raise OptionError("this checkpoint is English-only (.en); it cannot transcribe other languages")
        return ["en"] * n, probs
    if any(lang is None for lang in langs):
        detected = detect_language(engine, sess, n)
        langs = [lang or detected[i][0] for i, lang in enumerate(langs)]
        probs = [p for _, p in detected]
    return langs, probs


def group_of(o: DecodingOptions) -> int:
    """Rows per window for options at one temperature: K beams, best_of samples, or 1."""
    return o.beam_size or o.best_of or 1


def regroup(src: Session, g_src: int, dst: Session, g_dst: int, n: int) -> None:
    """Copy windows' cross k/v from rows w*g_src of `src` to rows w*g_dst .. w*g_dst+g_dst-1 of `dst`."""
    rows = torch.arange(n, device=src.cache.offset.device) * g_src
    for i in range(src.cache.n_layer):
        for kind in ("cross_k", "cross_v"):
            kv = src.cache.layer(kind, i).index_select(0, rows)  # a copy: src and dst may be one buffer
            dst.cache.layer(kind, i)[:n * g_dst].copy_(kv.repeat_interleave(g_dst, 0))


def decode_pass(engine: Engine, sess: Session, o: DecodingOptions, rows: list[Row | None]) -> list[RowOutput | None]:
    """One temperature over the rows (one per window): greedy/sampling, beams, or best_of samples."""
    if o.beam_size:
        return run_beams(engine, sess, rows, o.beam_size, o.patience, o.length_penalty, o.suppress_tokens,
                         o.suppress_blank)
    N = o.best_of or 1
    outs = engine.run(None, [replace(r, sample=k) if r else None for r in rows for k in range(N)],
                      sample_len=sess.sample_len, suppress_tokens=o.suppress_tokens,
                      suppress_blank=o.suppress_blank, repetition_guard=o.repetition_guard, sess=sess)
    if N == 1:
        return outs
    groups = [outs[w * N:(w + 1) * N] for w in range(len(rows))]
    return [g[best([(x.tokens, x.sum_logprob) for x in g], o.length_penalty)] if g[0] else None for g in groups]


def decode_windows(engine: Engine, mel: Tensor, options: DecodingOptions, *,
                   temperatures: Sequence[float] | None = None, prompts: Sequence | None = None,
                   languages: Sequence[str | None] | None = None,
                   needs_fallback: Callable[[DecodingResult], bool] | None = None,
                   batch: int | None = None) -> list[DecodingResult]:
    """Decode each row of `mel` [n, n_mels, 3000]; a row is re-decoded at the next temperature while
    `needs_fallback(result)`; the last result is kept if every temperature fails. With a schedule, each
    temperature takes `options.at_temperature(t)` (beams at T = 0, best_of at T > 0); without one, `options`
    as given (openai's decode(): beam_size searches at any temperature). Afterwards `engine.encoded` holds
    the windows' cross k/v in rows :n again."""
    n = mel.shape[0]
    temps = tuple(temperatures) if temperatures is not None else (options.temperature,)
    prompts = list(prompts) if prompts is not None else [None] * n
    sample_len = options.sample_len or engine.sample_len
    sess = home = engine.session(max(n, batch or 0), sample_len)
    engine.encode(mel, sess)
    langs, lang_probs = resolve_languages(
        engine, sess, n, list(languages) if languages is not None else [options.language] * n)
    heads = [prompt_tokens(engine, p) for p in prompts]
    sots = [engine.tok.sot_sequence(lang, options.task, not options.without_timestamps) for lang in langs]
    results: list[DecodingResult | None] = [None] * n
    pending, g = list(range(n)), 1
    for t in temps:
        o = options.at_temperature(t) if temperatures is not None else options  # decode(): as given (openai)
        if group_of(o) != g:
            new = engine.session(max(n, batch or 0), sample_len, group_of(o))
            regroup(sess, g, new, group_of(o), n)
            sess, g = new, group_of(o)
        rows = [Row(tuple(heads[i] + sots[i]), len(heads[i]), t, not o.without_timestamps, o.seed)
                if i in pending else None for i in range(n)]
        outs = decode_pass(engine, sess, o, rows)
        for i in pending:
            results[i] = make_result(engine, outs[i], t, langs[i])
            results[i].language_probs = lang_probs[i]
        pending = [i for i in pending if needs_fallback is not None and needs_fallback(results[i])]
        if not pending:
            break
    if g != 1:
        regroup(sess, g, home, 1, n)
        engine.encoded = home
    return results
