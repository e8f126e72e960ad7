"""Language identification and translation on the multilingual base checkpoint.

References on the same weights: openai-whisper's `model.detect_language(mel)` (the checkpoint exported
with `weights_tools export-openai`) for the language probabilities, transformers' `generate(task="translate")`
for translation tokens. Both are test-only dependencies; their tests skip cleanly without them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import clip, openai_reference
from whisperfast.audio import SAMPLE_RATE, load_audio
from whisperfast.errors import OptionError

GERMAN_FROM = 30 * SAMPLE_RATE  # multilingual.mp3: English, then German from 30 s on
CASES = {"jfk": ("jfk.flac", 0, "en"), "german": ("multilingual.mp3", GERMAN_FROM, "de"), "ru": ("ru.wav", 0, "ru")}


def audio_of(case: str) -> np.ndarray:
    name, start, _ = CASES[case]
    return load_audio(clip(name))[start:]


@pytest.fixture(scope="module")
def openai_base(base_dir, tmp_path_factory):
    return openai_reference(base_dir, tmp_path_factory.mktemp("openai"))


@pytest.mark.parametrize("case", list(CASES))
def test_detect_language_matches_openai_whisper(base, openai_base, case):
    """Same audio, each engine's own features (audio zero-padded to 30 s, log-mel), same weights."""
    import whisper

    audio = audio_of(case)
    code, probs = base.detect_language(audio)
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
    _, ref_probs = openai_base.detect_language(mel)
    ref_code = max(ref_probs, key=ref_probs.get)
    assert code == ref_code == CASES[case][2]
    assert probs.keys() == ref_probs.keys()
    diff = max(abs(probs[k] - ref_probs[k]) for k in probs)
    print(f"{case}: p({code}) = {probs[code]:.5f}, openai {ref_probs[code]:.5f}, max |diff| {diff:.2e}")
    assert diff <= 1e-4  # float32 softmax of two engines' logits: measured <= 2e-7, a processor moves it ~2e-5
    assert abs(sum(probs.values()) - 1) < 1e-5  # float32 sum of ~100 probabilities


def test_transcribe_detects_each_files_language(base):
    """transcribe(language=None) detects per file, on its own first 30 s, also when files share a batch.
    sample_len and no fallback only keep the test short: detection happens before decoding."""
    results = base.transcribe([audio_of("jfk"), audio_of("ru")], batch_size=2, sample_len=8, temperature=0.0)
    assert [r.language for r in results] == ["en", "ru"]
    assert all(r.language_probs[r.language] > 0.5 for r in results)
    given = base.transcribe(audio_of("ru"), language="de", sample_len=8, temperature=0.0)
    assert given.language == "de" and given.language_probs is None  # given: not detected


def test_english_only_never_detects(tiny_en):
    with pytest.raises(OptionError, match="English-only"):
        tiny_en.detect_language(clip("ru.wav"))
    r = tiny_en.transcribe(load_audio(clip("ru.wav")), sample_len=8, temperature=0.0)
    assert r.language == "en" and r.language_probs is None


# --- translation -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_base(base_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.WhisperForConditionalGeneration.from_pretrained(str(base_dir), dtype=torch.float32).eval()


@pytest.mark.parametrize("case,timestamps", [("ru", False), ("ru", True), ("german", True)],
                         ids=["ru-no_timestamps", "ru-timestamps", "german-timestamps"])
def test_translate_matches_transformers(base, base_dir, hf_base, case, timestamps):
    """First 30 s, greedy, task="translate" with the language given: the same tokens as transformers."""
    from weights_tools.reference import hf_generate
    from whisperfast.features import short_form_features

    audio, language = audio_of(case), CASES[case][2]
    mel = short_form_features([audio], base.config.n_mels)
    ref = hf_generate(base_dir, mel, timestamps=timestamps, language=language, task="translate", model=hf_base)[0]
    r = base.decode(audio, task="translate", language=language, without_timestamps=not timestamps)
    assert r.tokens == ref
    assert r.text and not any("\u0400" <= ch <= "\u04ff" for ch in r.text)  # no Cyrillic
    same = base.decode(audio, task="transcribe", language=language, without_timestamps=not timestamps)
    assert same.tokens != r.tokens


def test_translate_in_transcribe(base):
    r = base.transcribe(audio_of("ru"), task="translate", language="ru", temperature=0.0)
    assert r.language == "ru" and r.segments and r.text.strip()
    assert not any("\u0400" <= ch <= "\u04ff" for ch in r.text)  # no Cyrillic: translated, not transcribed


def test_english_only_cannot_translate(tiny_en):
    with pytest.raises(OptionError, match="English-only.*cannot translate"):
        tiny_en.decode(clip("jfk.flac"), task="translate")
    with pytest.raises(OptionError, match="English-only.*cannot translate"):
        tiny_en.transcribe(clip("jfk.flac"), task="translate")


@pytest.mark.parametrize("name,layers,warns", [("large-v3-turbo", 4, True), ("large-v3", 2, False)])
def test_turbo_shape_warns_on_translate(tmp_path, name, layers, warns):
    """large-v3-turbo (4 decoder layers, 128 mel bins) was not trained to translate: a warning, not an error."""
    import warnings

    import whisperfast
    from weights_tools.random_ckpt import write_random_checkpoint

    write_random_checkpoint(tmp_path, name, d_model=64, attention_heads=2, encoder_layers=1, decoder_layers=layers,
                            dtype="float32")
    m = whisperfast.load_model(tmp_path, device="cpu")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        m.decode(np.zeros(SAMPLE_RATE, dtype=np.float32), task="translate", language="de", sample_len=4)
        m.decode(np.zeros(SAMPLE_RATE, dtype=np.float32), task="transcribe", language="de", sample_len=4)
    hits = [w for w in seen if "not trained to translate" in str(w.message)]
    assert len(hits) == (1 if warns else 0)
    if warns:
        with pytest.warns(UserWarning, match="not trained to translate"):
            m.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), task="translate", language="de", sample_len=4,
                         temperature=0.0, silence_threshold=None)
