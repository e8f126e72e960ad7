"""Whisper tokenizer.json helpers: special ids, timestamp tokens, the large-v3 `<|yue|>` shift.

Every special id is read from the tokenizer, never hard-coded: English-only (`.en`) vocabularies
put every special token one id lower than multilingual ones, and large-v3 shifts everything after
the language block by one more.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SourceNotFoundError, TokenizerError

N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|> in steps of 0.02 s
TIME_PRECISION = 0.02
TASKS = ("translate", "transcribe")


def timestamp_token(i: int) -> str:
    return f"<|{i * TIME_PRECISION:.2f}|>"


def load_tokenizer_json(path: str | Path) -> dict:
    """Read a tokenizer.json (a file, or a directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise SourceNotFoundError(f"tokenizer.json not found: {p}")
    try:
        with open(p, encoding="utf-8") as f:
            tj = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise TokenizerError(f"{p}: not a readable tokenizer.json ({e})") from e
    if not isinstance(tj, dict) or "added_tokens" not in tj or "model" not in tj:
        raise TokenizerError(f"{p}: not a Hugging Face tokenizers file (no added_tokens/model)")
    return tj


def _added(tj: dict) -> dict[str, int]:
    return {a["content"]: int(a["id"]) for a in tj["added_tokens"]}


def vocab_size_of(tj: dict) -> int:
    """1 + the largest id of the BPE vocabulary and the added tokens."""
    ids = [int(a["id"]) for a in tj["added_tokens"]]
    ids += list(tj["model"].get("vocab", {}).values())
    return max(ids) + 1


@dataclass(frozen=True)
class SpecialTokens:
    eot: int
    sot: int
    translate: int
    transcribe: int
    startoflm: int
    startofprev: int
    nospeech: int | None  # <|nospeech|> (multilingual) or <|nocaptions|> (older .en tokenizers)
    notimestamps: int
    timestamp_begin: int  # notimestamps + 1; equals the id of <|0.00|> when present
    has_timestamps: bool
    languages: dict[str, int] = field(default_factory=dict)  # "<|en|>" -> id, in id order

    @property
    def language_codes(self) -> list[str]:
        return [t[2:-2] for t in self.languages]


def special_tokens(tj: dict) -> SpecialTokens:
    """Find every Whisper special id in a tokenizer.json (raises TokenizerError if one is missing)."""
    added = _added(tj)

    def need(tok: str) -> int:
        if tok not in added:
            raise TokenizerError(f"tokenizer.json has no {tok} added token; is it a Whisper tokenizer?")
        return added[tok]

    eot, sot = need("<|endoftext|>"), need("<|startoftranscript|>")
    translate, transcribe = need("<|translate|>"), need("<|transcribe|>")
    startoflm, startofprev = need("<|startoflm|>"), need("<|startofprev|>")
    notimestamps = need("<|notimestamps|>")
    nospeech = added.get("<|nospeech|>", added.get("<|nocaptions|>"))
    by_id = {i: c for c, i in added.items()}
    languages = {}
    for i in range(sot + 1, translate):
        c = by_id.get(i)
        if c is None or not (c.startswith("<|") and c.endswith("|>")):
            raise TokenizerError(f"tokenizer.json: id {i} between <|startoftranscript|> and <|translate|> "
                                 f"is {c!r}, expected a language token like <|en|>")
        languages[c] = i
    ts0 = added.get(timestamp_token(0))
    if ts0 is not None and ts0 != notimestamps + 1:
        raise TokenizerError(f"tokenizer.json: <|0.00|> has id {ts0}, expected <|notimestamps|>+1 = {notimestamps + 1}")
    return SpecialTokens(eot=eot, sot=sot, translate=translate, transcribe=transcribe, startoflm=startoflm,
                         startofprev=startofprev, nospeech=nospeech, notimestamps=notimestamps,
                         timestamp_begin=notimestamps + 1, has_timestamps=ts0 is not None, languages=languages)


def _fix_post_processor(tj: dict) -> None:
    """Re-point the TemplateProcessing special-token ids at the (possibly moved) added tokens."""
    pp = tj.get("post_processor")
    if not isinstance(pp, dict):
        return
    added = _added(tj)
    procs = pp.get("processors", [pp]) if pp.get("type") == "Sequence" else [pp]
    for proc in procs:
        for name, entry in (proc.get("special_tokens") or {}).items():
            toks = entry.get("tokens", [name])
            if all(t in added for t in toks):
                entry["ids"] = [added[t] for t in toks]


def with_timestamp_tokens(tj: dict) -> tuple[dict, int]:
    """Return (copy of tj with the 1501 timestamp tokens right after <|notimestamps|>, number added).

    The CTranslate2 tiny.en tokenizer.json lacks them; multilingual ones have them. Existing ones are
    verified (right ids, none missing) and not duplicated.
    """
    st = special_tokens(tj)
    added = _added(tj)
    present = [timestamp_token(i) in added for i in range(N_TIMESTAMPS)]
    if all(present):
        for i in range(N_TIMESTAMPS):
            if added[timestamp_token(i)] != st.timestamp_begin + i:
                raise TokenizerError(f"tokenizer.json: {timestamp_token(i)} has id {added[timestamp_token(i)]}, "
                                     f"expected {st.timestamp_begin + i}")
        return copy.deepcopy(tj), 0
    if any(present):
        raise TokenizerError(f"tokenizer.json has only {sum(present)} of the {N_TIMESTAMPS} timestamp tokens")
    taken = {int(a["id"]) for a in tj["added_tokens"]} | set(tj["model"].get("vocab", {}).values())
    new_ids = range(st.timestamp_begin, st.timestamp_begin + N_TIMESTAMPS)
    clash = taken.intersection(new_ids)
    if clash:
        raise TokenizerError(f"tokenizer.json: ids {min(clash)}.. after <|notimestamps|> are already used; "
                             "cannot add timestamp tokens")
    out = copy.deepcopy(tj)
    out["added_tokens"] += [
        {"id": st.timestamp_begin + i, "content": timestamp_token(i), "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": True, "special": False}
        for i in range(N_TIMESTAMPS)
    ]
    out["added_tokens"].sort(key=lambda a: int(a["id"]))
    return out, N_TIMESTAMPS


def insert_language_token(tj: dict, token: str = "<|yue|>") -> dict:
    """Copy of tj with `token` added right after the last language token; every later added id +1.

    This turns the 51865-token multilingual tokenizer into the large-v3 one (51866, 100 languages).
    """
    st = special_tokens(tj)
    if token in _added(tj):
        raise TokenizerError(f"tokenizer.json already has {token}")
    pos = st.translate  # the new token takes the id of <|translate|>, which moves up by one
    out = copy.deepcopy(tj)
    template = dict(next(a for a in out["added_tokens"] if int(a["id"]) == st.translate - 1))
    for a in out["added_tokens"]:
        if int(a["id"]) >= pos:
            a["id"] = int(a["id"]) + 1
    template.update(id=pos, content=token)
    out["added_tokens"].append(template)
    out["added_tokens"].sort(key=lambda a: int(a["id"]))
    _fix_post_processor(out)
    return out


def non_speech_tokens(tj: dict) -> list[int]:
    """openai-whisper's Tokenizer.non_speech_tokens, computed with the `tokenizers` library."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json.dumps(tj))

    def enc(s: str) -> list[int]:
        return tok.encode(s, add_special_tokens=False).ids

    symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
    symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
    misc = set("♩♪♫♬♭♮♯")
    result = {enc(" -")[0], enc(" '")[0]}
    for symbol in symbols + sorted(misc):
        for ids in (enc(symbol), enc(" " + symbol)):
            if len(ids) == 1 or symbol in misc:
                result.add(ids[0])
    return sorted(result)


def default_suppress_tokens(tj: dict) -> list[int]:
    """What openai-whisper suppresses with suppress_tokens="-1": non-speech symbols + task/sot tokens."""
    st = special_tokens(tj)
    extra = [st.translate, st.transcribe, st.sot, st.startofprev, st.startoflm]
    if st.nospeech is not None:
        extra.append(st.nospeech)
    return sorted(set(non_speech_tokens(tj)) | set(extra))


def default_begin_suppress_tokens(tj: dict) -> list[int]:
    from tokenizers import Tokenizer

    space = Tokenizer.from_str(json.dumps(tj)).encode(" ", add_special_tokens=False).ids
    return [space[0], special_tokens(tj).eot]


def tokenizer_config(tj: dict) -> dict:
    """tokenizer_config.json for transformers' WhisperTokenizer.

    Needed for Hugging Face decoding with timestamps: transformers takes timestamp_begin as
    `all_special_ids[-1] + 1`, and without this list all_special_ids is just [eot].
    """
    st = special_tokens(tj)
    specials = [a["content"] for a in sorted(tj["added_tokens"], key=lambda a: int(a["id"]))
                if a.get("special") and int(a["id"]) <= st.notimestamps]
    return {
        "tokenizer_class": "WhisperTokenizer",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "add_prefix_space": False,
        "errors": "replace",
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
        "additional_special_tokens": specials,
    }
