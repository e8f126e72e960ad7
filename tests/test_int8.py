"""dtype="int8": weight-only int8 decoder (model/quant.py). Agreement with float32 on the real clips (text per
30 s window, WER against the reference transcripts), every checkpoint layout, the state round trip, typed
errors, and CUDA."""

from __future__ import annotations

import csv
import re
import shutil

import numpy as np
import pytest
import torch

import whisperfast
from conftest import CLIPS, DATA, clip, word_edits
from whisperfast.audio import load_audio
from whisperfast.model.quant import Int8Embedding, Int8Linear, check_layer

WINDOW = 480_000  # 30 s at 16 kHz


@pytest.fixture(scope="module")
def tiny_int8(tiny_en_dir):
    return whisperfast.load_model(tiny_en_dir, device="cpu", dtype="int8")


def windows(english_only: bool = False) -> list[np.ndarray]:
    """Every 30 s window (the last one shorter) of every test clip, in CLIPS order; `english_only`: those with
    English speech (not ru.wav, nor multilingual.mp3's German second window)."""
    out = []
    for name in CLIPS:
        if english_only and name == "ru.wav":
            continue
        audio = load_audio(clip(name))
        out += [audio[i:i + WINDOW] for i in range(0, len(audio), WINDOW)][:1 if english_only and
                                                                           name == "multilingual.mp3" else None]
    return out


def words(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower().replace("’", "'")).split()


def wer(hyps: list[str], refs: list[str]) -> float:
    """Corpus word error rate in percent: word-level edit distance over all pairs / reference words."""
    errors = sum(word_edits(words(ref), words(hyp)) for hyp, ref in zip(hyps, refs))
    return 100.0 * errors / sum(len(words(ref)) for ref in refs)


def references(lang: str) -> dict[str, str]:
    """{clip: reference transcript} of the single-channel test clips in `lang` (tests/data/MANIFEST.tsv)."""
    with open(DATA / "MANIFEST.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {r["file"]: r["reference_transcript"] for r in rows
            if r["language"] == lang and r["reference_transcript"] and not r["reference_transcript"].startswith("L:")}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny_en", "base"])
def test_int8_agrees_with_float32_on_the_clips(name, request, tiny_en_dir, base_dir):
    """The issue's floor: identical text on >= 90% of the 30 s windows of the clips, and long-form WER against
    the reference transcripts within +0.5 points of float32's. tiny.en is English-only: its windows are those
    with English speech (what it makes of German speech is noise either way: one such window differed)."""
    fp32 = request.getfixturevalue(name)
    int8 = whisperfast.load_model(tiny_en_dir if name == "tiny_en" else base_dir, device="cpu", dtype="int8")
    lang = "en" if name == "tiny_en" else None
    audio = windows(english_only=name == "tiny_en")
    a = [r.text for r in fp32.decode(audio, language=lang)]
    b = [r.text for r in int8.decode(audio, language=lang)]
    same = sum(x == y for x, y in zip(a, b))
    print(f"{name}: int8 text identical to float32 on {same}/{len(a)} windows")
    assert same >= 0.9 * len(a), [(x, y) for x, y in zip(a, b) if x != y]

    refs = references("en") | ({} if name == "tiny_en" else references("ru"))
    files = sorted(refs)
    kw = dict(temperature=0.0, condition_on_previous_text=False)
    w32 = wer([fp32.transcribe(clip(f), **kw).text for f in files], [refs[f] for f in files])
    w8 = wer([int8.transcribe(clip(f), **kw).text for f in files], [refs[f] for f in files])
    print(f"{name}: WER float32 {w32:.2f}%, int8 {w8:.2f}% on {files}")
    assert w8 <= w32 + 0.5


def test_wer_counts_edits():
    assert wer(["a b c"], ["a b c"]) == 0.0
    assert wer(["A, b!"], ["a x b c"]) == 50.0  # x and c deleted: 2 errors in 4 words
    assert wer(["a b c d"], ["a b"]) == 100.0


def test_int8_layers_and_sizes(tiny_int8, tiny_en):
    """The token embedding and, per decoder layer, self-attention q/k/v, cross-attention q and fc1 are int8
    (scales per output row); the encoder, both attention outputs, cross-attention k/v and fc2 stay float. Bytes of tiny.en's decoder: the embedding 3 per weight (int8 + the
    float16 rows the projection rescores from), the int8 matrices 1, the rest 4: 0.70 of float32's bytes."""
    d = tiny_int8.model.decoder
    assert isinstance(d.embed_tokens, Int8Embedding) and d.embed_tokens.weight.dtype == torch.int8
    layer = d.layers[0]
    for m in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.encoder_attn.q_proj,
              layer.fc1):
        assert isinstance(m, Int8Linear) and m.weight.dtype == torch.int8 and m.scale.shape == m.weight.shape[:1]
    for m in (layer.self_attn.out_proj, layer.encoder_attn.k_proj, layer.encoder_attn.v_proj,
              layer.encoder_attn.out_proj, layer.fc2):
        assert m.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in tiny_int8.model.encoder.parameters())
    assert tiny_int8.model.dtype == torch.float32

    def nbytes(m) -> int:
        seen = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in [*m.parameters(), *m.buffers()]}
        return sum(seen.values())
    ratio = nbytes(d) / nbytes(tiny_en.model.decoder)
    assert ratio < 0.72, ratio


def test_quantised_values_are_within_half_a_step(tiny_int8, tiny_en):
    """int8 * scale reproduces each float32 weight within half a quantisation step (plus the float error of the
    product), and the largest value of a row maps to +-127."""
    w = tiny_en.model.decoder.layers[0].fc1.weight.float()
    m = tiny_int8.model.decoder.layers[0].fc1
    scale = m.scale.float()[:, None]
    assert (m.weight.float() * scale - w).abs().le(scale * 0.5 + 1e-6).all()
    assert m.weight.abs().amax(dim=1).ge(126).all()  # 127 unless the bf16 scale rounded up (by < 2**-8)


def write_layout(src, dst, dtype: torch.dtype, shards: int):
    from safetensors.torch import load_file

    from weights_tools.hf_layout import save_safetensors

    dst.mkdir()
    for f in src.iterdir():
        if f.suffix == ".json" and not f.name.startswith("model.safetensors"):
            shutil.copy(f, dst / f.name)
    save_safetensors(dst, {k: v.to(dtype) for k, v in load_file(str(src / "model.safetensors")).items()},
                     shards=shards)
    return dst


def test_int8_loads_every_checkpoint_layout(tiny_en_dir, tiny_en, tiny_int8, tmp_path):
    """The packaged CTranslate2 model converted to float16 safetensors, a float32 copy, and float32 in two
    shards: each loads as int8 and transcribes jfk as float32 does."""
    want = tiny_en.transcribe(clip("jfk.flac")).text
    assert tiny_int8.transcribe(clip("jfk.flac")).text == want
    for name, dtype, shards in (("fp32", torch.float32, 1), ("sharded", torch.float32, 2)):
        path = write_layout(tiny_en_dir, tmp_path / name, dtype, shards)
        assert (shards > 1) == (path / "model.safetensors.index.json").is_file()
        assert whisperfast.load_model(path, device="cpu", dtype="int8").transcribe(clip("jfk.flac")).text == want


def test_int8_state_round_trips(tiny_int8, tmp_path):
    """The int8 state (int8 matrices, scales, biases) saved and loaded into an int8 model of other weights gives
    that model the same logits exactly (the fused q/k/v matrix included: q/k/v are views of it)."""
    from safetensors.torch import load_file, save_file

    from weights_tools.random_ckpt import write_random_checkpoint

    c = tiny_int8.config
    write_random_checkpoint(tmp_path / "other", "tiny.en", d_model=c.n_text_state, attention_heads=c.n_text_head,
                            encoder_layers=c.n_audio_layer, decoder_layers=c.n_text_layer, dtype="float32",
                            tokenizer=tiny_int8.path / "tokenizer.json")
    other = whisperfast.load_model(tmp_path / "other", device="cpu", dtype="int8")
    save_file({k: v.contiguous() for k, v in tiny_int8.model.state_dict().items()}, str(tmp_path / "int8.safetensors"))
    other.model.load_state_dict(load_file(str(tmp_path / "int8.safetensors")), strict=True)

    def logits(m):
        xa = m.model.encoder(torch.zeros(1, 80, 3000))
        cache = m.model.decoder.new_cache(1, 8, xa.shape[1], dtype=xa.dtype, device=xa.device)
        m.model.decoder.fill_cross(xa, cache)
        return m.model.decoder(torch.tensor([[50257, 50362, 50363, 440]]), torch.arange(4), cache)
    with torch.no_grad():
        assert torch.equal(logits(other), logits(tiny_int8))
    assert other.decode(clip("jfk.flac")).text == tiny_int8.decode(clip("jfk.flac")).text


def test_int8_errors_are_typed(tiny_en_dir, tmp_path):
    from weights_tools.random_ckpt import write_random_checkpoint

    with pytest.raises(whisperfast.OptionError, match="device"):
        whisperfast.load_model(tiny_en_dir, device="mps", dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(whisperfast.OptionError, match="CUDA is not available"):
            whisperfast.load_model(tiny_en_dir, device="cuda", dtype="int8")
    with pytest.raises(whisperfast.OptionError, match="Conv1d; only Linear and Embedding"):
        check_layer("encoder.conv1", torch.nn.Conv1d(80, 8, 3))
    # a width the CPU kernel cannot take (not a multiple of 8): refused before any product runs
    write_random_checkpoint(tmp_path / "odd", "tiny.en", d_model=36, attention_heads=2, encoder_layers=1,
                            decoder_layers=1, dtype="float32", tokenizer=tiny_en_dir / "tokenizer.json")
    with pytest.raises(whisperfast.OptionError, match=r"decoder.layers.0.self_attn.q_proj has input width 36"):
        whisperfast.load_model(tmp_path / "odd", device="cpu", dtype="int8")
    with pytest.raises(whisperfast.OptionError, match="float32, float16, bfloat16 or int8"):
        whisperfast.load_model(tiny_en_dir, device="cpu", dtype="int4")


@pytest.mark.cuda
def test_int8_on_cuda_matches_float16_text(tiny_en_dir):
    """Weight-only int8 on CUDA (float16 activations, compiled step): jfk's text as float16's, eager and compiled."""
    fp16 = whisperfast.load_model(tiny_en_dir, device="cuda", dtype="float16")
    want = fp16.transcribe(clip("jfk.flac")).text
    for compile in (False, True):
        m = whisperfast.load_model(tiny_en_dir, device="cuda", dtype="int8", compile=compile)
        assert m.model.decoder.embed_tokens.weight.dtype == torch.int8 and m.model.dtype == torch.float16
        assert m.transcribe(clip("jfk.flac")).text == want


def test_int8_model_holds_no_grad_state_and_searches_beams(tiny_int8, tiny_en):
    """The int8 layers' buffers (biases taken over from nn.Linear) require no grad: a beam search, whose pool
    reads tensors back to numpy, runs on them, and gives fp32's words on jfk (int8 moved a comma: punctuation
    is not compared)."""
    assert [n for n, b in tiny_int8.model.named_buffers() if b.requires_grad] == []
    assert [n for n, p in tiny_int8.model.named_parameters() if p.requires_grad] == []
    got, want = (m.decode(clip("jfk.flac"), beam_size=5).text for m in (tiny_int8, tiny_en))
    assert words(got) == words(want) and len(words(got)) == 22
