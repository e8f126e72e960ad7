"""Windows of 30 s, one per row: prompts -> decode loop -> DecodingResult, with temperature fallback.

The batch is fixed: rows that need a fallback are re-decoded at the next temperature in the same
session (the others sit idle), reusing the cross k/v of their windows, so nothing is re-encoded and a
compiled bucket is reused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from ..errors import OptionError
from .greedy import Engine, Row, RowOutput
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


def decode_windows(engine: Engine, mel: Tensor, options: DecodingOptions, *,
                   temperatures: Sequence[float] | None = None, prompts: Sequence | None = None,
                   languages: Sequence[str | None] | None = None,
                   needs_fallback: Callable[[DecodingResult], bool] | None = None,
                   batch: int | None = None) -> list[DecodingResult]:
    """Decode each row of `mel` [n, n_mels, 3000]; a row is re-decoded at the next temperature while
    `needs_fallback(result)`; the last result is kept if every temperature fails."""
    n = mel.shape[0]
    temps = tuple(temperatures) if temperatures is not None else (options.temperature,)
    prompts = list(prompts) if prompts is not None else [None] * n
    sess = engine.session(max(n, batch or 0), options.sample_len or engine.sample_len)
    engine.encode(mel, sess)
    langs, lang_probs = resolve_languages(
        engine, sess, n, list(languages) if languages is not None else [options.language] * n)
    heads = [prompt_tokens(engine, p) for p in prompts]
    sots = [engine.tok.sot_sequence(lang, options.task, not options.without_timestamps) for lang in langs]
    results: list[DecodingResult | None] = [None] * n
    pending = list(range(n))
    for t in temps:
        rows = [Row(tuple(heads[i] + sots[i]), len(heads[i]), t, not options.without_timestamps, options.seed)
                if i in pending else None for i in range(n)]
        outs = engine.run(None, rows, sample_len=sess.sample_len, suppress_tokens=options.suppress_tokens,
                          suppress_blank=options.suppress_blank, batch=sess.batch,
                          repetition_guard=options.repetition_guard)
        for i in pending:
            results[i] = make_result(engine, outs[i], t, langs[i])
            results[i].language_probs = lang_probs[i]
        pending = [i for i in pending if needs_fallback is not None and needs_fallback(results[i])]
        if not pending:
            break
    return results
