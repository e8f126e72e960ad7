"""Checkpoint shapes we cannot download (large-v3, large-v3-turbo, distil-large-v3): random weights in
the HF layout at reduced width, loaded strictly, logits checked against transformers on the same files."""

from __future__ import annotations

import pytest
import torch

from weights_tools.random_ckpt import write_random_checkpoint

# real layer counts (encoder / decoder), reduced width; encoders trimmed to keep the test fast
SHAPES = {"large-v3": (4, 32), "large-v3-turbo": (4, 4), "distil-large-v3": (4, 2)}


@pytest.fixture(scope="module", params=list(SHAPES))
def ckpt(request, tmp_path_factory):
    enc, dec = SHAPES[request.param]
    path = tmp_path_factory.mktemp(request.param)
    write_random_checkpoint(path, request.param, d_model=64, attention_heads=2, encoder_layers=enc,
                            decoder_layers=dec, dtype="float32", shards=2 if request.param == "large-v3" else 1)
    return request.param, path


def test_loads_strictly_and_matches_transformers(ckpt):
    import whisperfast
    from transformers import WhisperForConditionalGeneration

    name, path = ckpt
    m = whisperfast.load_model(path, device="cpu", dtype="float32")
    c = m.config
    assert c.n_mels == 128 and c.n_vocab == 51866 and c.n_text_layer == SHAPES[name][1]
    hf = WhisperForConditionalGeneration.from_pretrained(str(path), dtype=torch.float32).eval()
    torch.manual_seed(0)
    mel = torch.randn(2, 128, 3000)
    tokens = torch.tensor([[m.tokenizer.sot, m.tokenizer.language_id("de"), m.tokenizer.transcribe, 1000, 2000]] * 2)
    with torch.no_grad():
        ref = hf(input_features=mel, decoder_input_ids=tokens).logits
        xa = m.model.encoder(mel)
        cache = m.model.decoder.new_cache(2, 8, xa.shape[1], dtype=xa.dtype, device=xa.device)
        m.model.decoder.fill_cross(xa, cache)
        ours = m.model.decoder(tokens, torch.arange(5), cache)
    assert (ours - ref).abs().max().item() < 1e-4


def test_large_v3_vocabulary_ids(ckpt):
    import whisperfast

    name, path = ckpt
    tok = whisperfast.load_model(path, device="cpu").tokenizer
    # large-v3 adds <|yue|>: every special id after the language block moves up by one
    assert (tok.eot, tok.sot, tok.translate, tok.transcribe, tok.sot_lm, tok.sot_prev, tok.no_speech,
            tok.no_timestamps, tok.timestamp_begin) == (50257, 50258, 50359, 50360, 50361, 50362, 50363, 50364, 50365)
    assert len(tok.language_ids) == 100 and tok.language_ids["yue"] == 50358
    assert tok.sot_sequence("de", "translate", timestamps=False) == [50258, tok.language_ids["de"], 50359, 50364]


def test_decode_runs_on_random_weights(ckpt):
    """The whole decode path (prefill, rules, loop) runs on each shape and respects the token cap."""
    import whisperfast

    name, path = ckpt
    m = whisperfast.load_model(path, device="cpu")
    r = m.decode(torch.zeros(16000).numpy(), language="en", sample_len=12)
    assert len(r.tokens) <= 12
    assert all(0 <= t < m.config.n_vocab for t in r.tokens)


def test_decoder_layout_keeps_names_and_values(tiny_en_dir):
    """`prepare_decoder` (fused q/k/v, column-major on CPU) changes storage only: the state dict has the
    checkpoint's names and values, q/k/v are views of the fused matrix, and the fused product equals
    the three separate ones."""
    from safetensors.torch import load_file

    from whisperfast.model.load import load_whisper, to_model_keys

    stored = to_model_keys(load_file(str(tiny_en_dir / "model.safetensors")))
    model = load_whisper(tiny_en_dir, device=torch.device("cpu"), dtype=torch.float32)
    sd = model.state_dict()
    assert sorted(sd) == sorted(stored)
    assert all(torch.equal(sd[k], stored[k].float()) for k in sd)
    a = model.decoder.layers[1].self_attn
    assert {p.untyped_storage().data_ptr() for p in (a.q_proj.weight, a.k_proj.weight, a.v_proj.weight)} == {
        a.qkv_weight.untyped_storage().data_ptr()}
    assert model.decoder.embed_tokens.weight.stride() == (1, 51864)  # column-major on CPU
    x = torch.randn(2, 5, 384)
    fused = a.qkv(x)
    separate = (a.heads(a.q_proj(x)), *a.kv(x))
    assert all(torch.allclose(f, s, atol=1e-5) for f, s in zip(fused, separate))


def test_max_initial_timestamp_index_from_generation_config(tiny_en_dir):
    """The first timestamp's cap comes from generation_config.json: 0 stays 0 (only <|0.00|>), a missing
    or null value is openai-whisper's 1.0 s (index 50)."""
    import json

    from whisperfast.model.config import ModelConfig

    config = json.loads((tiny_en_dir / "config.json").read_text())
    gen = json.loads((tiny_en_dir / "generation_config.json").read_text())
    got = [ModelConfig.from_hf(config, {**gen, "max_initial_timestamp_index": v}).max_initial_timestamp_index
           for v in (0, 1, None)]
    without = {k: v for k, v in gen.items() if k != "max_initial_timestamp_index"}
    assert got + [ModelConfig.from_hf(config, without).max_initial_timestamp_index] == [0, 1, 50, 50]
