"""Windows of 30 s, one per row: prompts -> decode passes -> DecodingResult, with temperature fallback.

The batch is fixed: rows that need a fallback are re-decoded at the next temperature (the others sit idle),
against the cross k/v the `Encoded` batch holds, so nothing is re-encoded and a compiled bucket is reused.
Each temperature decodes with `options.at_temperature(t)` (whisper.transcribe's decode_with_fallback): K beams
at T = 0, best_of samples at T > 0, each a group of rows per window (`Encoded.rows(group)`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import OptionError
from .beam import best, run_beams
from .options import DecodingOptions, DecodingResult, compression_ratio
from .rows import Row, RowOutput

if TYPE_CHECKING:
    from .engine import Encoded, Engine


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


def resolve_languages(enc: Encoded, langs: list[str | None]) -> tuple[list[str], list]:
    """The language of each window: given, else detected (multilingual), else English (.en)."""
    probs: list[dict | None] = [None] * enc.n
    if not enc.engine.tok.multilingual:
        if any(lang not in (None, "en") for lang in langs):
            raise OptionError("this checkpoint is English-only (.en); it cannot transcribe other languages")
        return ["en"] * enc.n, probs
    if any(lang is None for lang in langs):
        detected = enc.detect_language()
        langs = [lang or detected[i][0] for i, lang in enumerate(langs)]
        probs = [p for _, p in detected]
    return langs, probs


def group_of(o: DecodingOptions) -> int:
    """Rows per window for options at one temperature: K beams, best_of samples, or 1."""
    return o.beam_size or o.best_of or 1


def decode_pass(enc: Encoded, o: DecodingOptions, rows: list[Row | None]) -> list[RowOutput | None]:
    """One temperature over the rows (row i on window i): greedy/sampling, beams, or best_of samples."""
    engine, sess = enc.engine, enc.rows(group_of(o), o.sample_len)
    if o.beam_size:
        return run_beams(engine, sess, rows, o)
    N = o.best_of or 1
    if N == 1:
        return engine.run(sess, rows, o)
    outs = engine.run(sess, [replace(r, sample=k) if r else None for r in rows for k in range(N)], o)
    groups = [outs[w * N:(w + 1) * N] for w in range(len(rows))]
    return [g[best([(x.tokens, x.sum_logprob) for x in g], o.length_penalty)] if g[0] else None for g in groups]


def decode(enc: Encoded, options: DecodingOptions, *, temperatures: Sequence[float] | None = None,
           prompts: Sequence | None = None, languages: Sequence[str | None] | None = None,
           needs_fallback: Callable[[DecodingResult], bool] | None = None,
           hold_eot: Sequence[float | None] | None = None) -> list[DecodingResult]:
    """Decode each encoded window; a window is re-decoded at the next temperature while
    `needs_fallback(result)`; the last result is kept if every temperature fails. With a schedule, each
    temperature takes `options.at_temperature(t)` (beams at T = 0, best_of at T > 0); without one, `options`
    as given (openai's decode(): beam_size searches at any temperature). `prompts`: previous text per window
    (a str or token ids); `languages`: per window (None: `options.language`, else detected); `hold_eot`: per
    window, seconds before which the window may not end (`Row.hold_eot`; None: no hold), at the schedule's first
    temperature only: a window whose held pass fails the fallback test (text forced on past what it could
    hear loops or scores low) is decoded again at the next temperature as whisper would, free to stop."""
    engine, n = enc.engine, enc.n
    temps = tuple(temperatures) if temperatures is not None else (options.temperature,)
    prompts = list(prompts) if prompts is not None else [None] * n
    holds = list(hold_eot) if hold_eot is not None else [None] * n
    langs, lang_probs = resolve_languages(enc, list(languages) if languages is not None else [options.language] * n)
    heads = [prompt_tokens(engine, p) for p in prompts]
    sots = [engine.tok.sot_sequence(lang, options.task, not options.without_timestamps) for lang in langs]
    results: list[DecodingResult | None] = [None] * n
    pending = list(range(n))
    for t in temps:
        o = options.at_temperature(t) if temperatures is not None else options  # decode(): as given (openai)
        rows = [Row(tuple(heads[i] + sots[i]), len(heads[i]), t, not o.without_timestamps, o.seed,
                    hold_eot=holds[i] if t == temps[0] else None) if i in pending else None for i in range(n)]
        outs = decode_pass(enc, o, rows)
        for i in pending:
            results[i] = make_result(engine, outs[i], t, langs[i])
            results[i].language_probs = lang_probs[i]
        pending = [i for i in pending if needs_fallback is not None and needs_fallback(results[i])]
        if not pending:
            break
    return results

