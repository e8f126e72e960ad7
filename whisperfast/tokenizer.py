"""Whisper tokenizer on the checkpoint's `tokenizer.json` (via `tokenizers`).

Every special id is read from the vocabulary of the checkpoint, never hard-coded: `.en` vocabularies are
one id lower than multilingual ones, and large-v3 shifts every id after the language block by one.
Timestamp tokens follow `<|notimestamps|>`: one per 0.02 s, 1501 of them.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer

from .errors import ModelLoadError, OptionError

LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian",
    "kn": "kannada", "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque",
    "is": "icelandic", "hy": "armenian", "ne": "nepali", "mn": "mongolian", "bs": "bosnian",
    "kk": "kazakh", "sq": "albanian", "sw": "swahili", "gl": "galician", "mr": "marathi", "pa": "punjabi",
    "si": "sinhala", "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans",
    "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi",
    "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
    "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa",
    "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}
TO_LANGUAGE_CODE = {
    **{name: code for code, name in LANGUAGES.items()},
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb",
    "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si",
    "castilian": "es", "mandarin": "zh",
}
TASKS = ("transcribe", "translate")


def normalize_language(language: str | None) -> str | None:
    """'English', 'en', '<|en|>' -> 'en'; None stays None. Unknown names raise OptionError."""
    if language is None:
        return None
    if not isinstance(language, str):
        raise OptionError(f"language must be a code or name such as 'en' or 'german' (a str) or None, "
                          f"not {language!r}")
    code = language.strip().lower().removeprefix("<|").removesuffix("|>")
    code = TO_LANGUAGE_CODE.get(code, code)
    if code not in LANGUAGES:
        raise OptionError(
            f"unknown language {language!r}; use a code or name such as 'en', 'de', 'german' "
            f"(one of {len(LANGUAGES)}: {', '.join(sorted(LANGUAGES))})"
        )
    return code


@dataclass(frozen=True)
class Tokenizer:
    """Text <-> ids, the special ids of this vocabulary, and the decoder's start sequences."""

    hf: _HFTokenizer = field(repr=False)
    eot: int
    sot: int
    sot_prev: int
    sot_lm: int
    no_speech: int
    no_timestamps: int
    transcribe: int | None
    translate: int | None
    language_ids: dict  # code -> id, in vocabulary order; empty for .en vocabularies

    @classmethod
    def from_file(cls, path: str | os.PathLike, num_languages: int = 0) -> "Tokenizer":
        """`num_languages`: 0 for English-only checkpoints (their vocabularies still hold language
        tokens, unused), 99 for most multilingual ones, 100 for large-v3 (from the model's vocab size)."""
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such file; a Whisper checkpoint needs the tokenizer.json of its "
                                 "model (copy it from the model's Hugging Face repository)")
        try:
            hf = _HFTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises plain Exceptions with terse messages
            raise ModelLoadError(f"{path}: not a readable tokenizer.json ({e}); re-download it from the "
                                 "model's Hugging Face repository") from None

        def need(tok: str) -> int:
            i = hf.token_to_id(tok)
            if i is None:
                raise ModelLoadError(f"{path}: the vocabulary has no {tok} token; is this a Whisper tokenizer?")
            return i

        langs = {c: i for c in LANGUAGES if (i := hf.token_to_id(f"<|{c}|>")) is not None}
        langs = dict(sorted(langs.items(), key=lambda kv: kv[1])[:num_languages])
        no_speech = hf.token_to_id("<|nospeech|>")
        return cls(
            hf=hf, eot=need("<|endoftext|>"), sot=need("<|startoftranscript|>"),
            sot_prev=need("<|startofprev|>"), sot_lm=need("<|startoflm|>"),
            no_speech=no_speech if no_speech is not None else need("<|nocaptions|>"),
            no_timestamps=need("<|notimestamps|>"),
            transcribe=hf.token_to_id("<|transcribe|>"), translate=hf.token_to_id("<|translate|>"),
            language_ids=dict(sorted(langs.items(), key=lambda kv: kv[1])),
        )

    # --- ids -------------------------------------------------------------------------------------
    @property
    def timestamp_begin(self) -> int:
        return self.no_timestamps + 1

    @property
    def multilingual(self) -> bool:
        return len(self.language_ids) > 0

    def language_id(self, language: str) -> int:
        code = normalize_language(language)
        if code not in self.language_ids:
            raise OptionError(f"language {language!r} is not in this checkpoint's vocabulary")
        return self.language_ids[code]

    def sot_sequence(self, language: str | None = None, task: str = "transcribe",
                     timestamps: bool = True) -> list[int]:
        """`<|startoftranscript|>` [+ `<|lang|>` + `<|task|>`] [+ `<|notimestamps|>`]."""
        if task not in TASKS:
            raise OptionError(f"task must be one of {TASKS}, not {task!r}")
        seq = [self.sot]
        if self.multilingual:
            seq += [self.language_id(language or "en"), self.translate if task == "translate" else self.transcribe]
        elif task == "translate":
            raise OptionError("this checkpoint is English-only (.en): it cannot translate; use a multilingual model")
        if not timestamps:
            seq.append(self.no_timestamps)
        return seq

    @cached_property
    def non_speech_tokens(self) -> list[int]:
        """openai-whisper's list of symbol tokens (`suppress_tokens=-1`)."""
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        miscellaneous = set("♩♪♫♬♭♮♯")
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + list(miscellaneous):
            for tokens in [self.encode(symbol), self.encode(" " + symbol)]:
                if len(tokens) == 1 or symbol in miscellaneous:
                    result.add(tokens[0])
        return sorted(result)

    @property
    def special_suppress(self) -> list[int]:
        """Always suppressed while sampling: task, start, prev, lm and no-speech tokens."""
        ids = [self.sot, self.sot_prev, self.sot_lm, self.no_speech, self.transcribe, self.translate]
        return [i for i in ids if i is not None]

    # --- text ------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text of the ids below the timestamp range (openai-whisper's `decode`)."""
        return self.hf.decode([i for i in ids if i < self.timestamp_begin], skip_special_tokens=False)

    def decode_with_timestamps(self, ids: list[int]) -> str:
        """Text with `<|1.08|>` markers for timestamp tokens and special tokens spelled out."""
        out, run = [], []
        for i in ids:
            if i >= self.timestamp_begin:
                out.append(self.hf.decode(run, skip_special_tokens=False) if run else "")
                out.append(f"<|{(i - self.timestamp_begin) * 0.02:.2f}|>")
                run = []
            else:
                run.append(i)
        out.append(self.hf.decode(run, skip_special_tokens=False) if run else "")
        return "".join(out)

    def split_to_word_tokens(self, ids: list[int], language: str | None = None):
        """Words and their ids: on spaces, or on unicode points for languages without spaces."""
        if language in {"zh", "ja", "th", "lo", "my", "yue"}:
            return self.split_on_unicode(ids)
        subwords, subword_ids = self.split_on_unicode(ids)
        words: list[str] = []
        word_ids: list[list[int]] = []
        for sub, sub_ids in zip(subwords, subword_ids):
            special = sub_ids[0] >= self.eot
            if special or sub.startswith(" ") or sub.strip() in string.punctuation or not words:
                words.append(sub)
                word_ids.append(list(sub_ids))
            else:
                words[-1] += sub
                word_ids[-1].extend(sub_ids)
        return words, word_ids

    def split_on_unicode(self, ids: list[int]):
        """Group ids into pieces that decode to whole unicode characters."""
        full = self.decode_with_timestamps(ids)
        pieces, piece_ids, current, offset = [], [], [], 0
        for i in ids:
            current.append(i)
            text = self.decode_with_timestamps(current)
            if "\ufffd" not in text or full[offset + text.index("\ufffd")] == "\ufffd":
                pieces.append(text)
                piece_ids.append(current)
                current = []
                offset += len(text)
        return pieces, piece_ids
