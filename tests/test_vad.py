"""Silero VAD v6 in pure torch (whisperfast/vad) against silero-vad's own ONNX model through onnxruntime, and
its speech regions against faster-whisper's `get_speech_timestamps`."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLIPS, clip

from whisperfast.audio import SAMPLE_RATE, load_audio
from whisperfast.errors import OptionError
from whisperfast.vad import FRAME, ProbStream, TimeMap, VadOptions, load_vad, pack_chunks, speech_probs, speech_timestamps
from whisperfast.vad.model import WEIGHTS

SILERO_VERSION = "6.2.3"  # the weights shipped in whisperfast/vad are this release's model


def silero_onnx_session():
    import onnxruntime

    path = Path(metadata.distribution("silero-vad").locate_file("silero_vad/data/silero_vad.onnx"))
    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = opts.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def silero_probs(audio: np.ndarray, session) -> np.ndarray:
    """silero-vad's OnnxWrapper loop: 512-sample frames (the last zero-padded), 64 samples of context, state carried."""
    n = -(-len(audio) // FRAME)
    a = np.zeros(n * FRAME, np.float32)
    a[: len(audio)] = audio
    state, context, out = np.zeros((2, 1, 128), np.float32), np.zeros((1, 64), np.float32), []
    for i in range(n):
        x = np.concatenate([context, a[None, i * FRAME: (i + 1) * FRAME]], 1)
        p, state = session.run(None, {"input": x, "state": state, "sr": np.array(SAMPLE_RATE, np.int64)})
        out.append(p[0, 0])
        context = x[:, -64:]
    return np.array(out, np.float32)


class SileroForFasterWhisper:
    """silero-vad's ONNX model behind faster-whisper's VAD-model interface (padded audio -> probabilities)."""

    def __init__(self):
        self.session = silero_onnx_session()

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return silero_probs(audio, self.session)


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {name: load_audio(clip(name)) for name in CLIPS}


def test_shipped_weights_are_silero_vads_model():
    from weights_tools.silero import silero_state_dict

    from safetensors.torch import load_file

    assert metadata.version("silero-vad") == SILERO_VERSION
    shipped, theirs = load_file(WEIGHTS), silero_state_dict()
    assert shipped.keys() == theirs.keys()
    for k in theirs:
        assert torch.equal(shipped[k], theirs[k]), k
    assert sum(t.numel() for t in shipped.values()) == 309_633


def test_probabilities_equal_silero_onnx_on_every_clip(clips):
    session = silero_onnx_session()
    for name, audio in clips.items():
        ours, ref = speech_probs(audio), silero_probs(audio, session)
        assert ours.shape == ref.shape == (-(-len(audio) // FRAME),), name
        # float32 convolutions and LSTM in other kernels' summation orders: measured <= 1.1e-5, the issue allows 1e-3
        assert np.abs(ours - ref).max() <= 1e-3, (name, np.abs(ours - ref).max())
        assert (ours >= 0.5).any() and (ours < 0.35).any(), name  # every clip has speech and pauses: not a flat output


def test_streaming_in_odd_blocks_equals_one_pass(clips):
    audio = clips["multilingual.mp3"]
    whole = speech_probs(audio, block=4096)
    stream, parts = ProbStream(block=7), []
    for a in range(0, len(audio), 12_345):
        parts.append(stream.push(audio[a: a + 12_345]))
    parts.append(stream.finish())
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape
    # the same frames through GEMMs of other batch sizes (7 vs 4096 rows): float32 reassociation only
    assert np.abs(streamed - whole).max() < 1e-5


def test_short_and_empty_audio():
    assert speech_probs(np.zeros(0, np.float32)).shape == (0,)
    assert speech_probs(np.zeros(100, np.float32)).shape == (1,)
    assert speech_timestamps(np.zeros(0, np.float32)) == []


def test_timestamps_equal_faster_whisper_defaults_on_every_clip(clips):
    from faster_whisper.vad import get_speech_timestamps

    for name, audio in clips.items():
        ref, ours = get_speech_timestamps(audio), speech_timestamps(audio)
        assert len(ours) == len(ref) >= 1, (name, ours, ref)
        for a, b in zip(ours, ref):
            assert abs(a["start"] - b["start"]) <= FRAME and abs(a["end"] - b["end"]) <= FRAME, (name, ours, ref)


OPTION_SETS = [dict(min_silence_duration_ms=160, max_speech_duration_s=30),  # faster-whisper's batched pipeline
               dict(min_silence_duration_ms=100, max_speech_duration_s=3, speech_pad_ms=30, min_speech_duration_ms=250),
               dict(threshold=0.3, neg_threshold=0.2, min_silence_duration_ms=500, speech_pad_ms=0),
               dict(threshold=0.7, max_speech_duration_s=1.5)]


@pytest.mark.parametrize("options", OPTION_SETS)
def test_timestamps_equal_faster_whisper_algorithm(clips, options, monkeypatch):
    """faster-whisper 1.2.1 bundles an older v6 model (probabilities up to 0.7 apart from silero-vad 6.2.3's); with
    silero-vad's model in its place, its regions and ours must agree for any options."""
    import faster_whisper.vad as fv

    monkeypatch.setattr(fv, "get_vad_model", SileroForFasterWhisper)
    for name, audio in clips.items():
        ref, ours = fv.get_speech_timestamps(audio, **options), speech_timestamps(audio, options)
        assert len(ours) == len(ref), (name, options, ours, ref)
        for a, b in zip(ours, ref):
            assert abs(a["start"] - b["start"]) <= FRAME and abs(a["end"] - b["end"]) <= FRAME, (name, ours, ref)


def test_max_speech_duration_splits_long_regions(clips):
    speeches = speech_timestamps(clips["multilingual.mp3"], dict(max_speech_duration_s=3, min_silence_duration_ms=2000))
    assert len(speeches) > 10
    assert all(s["end"] - s["start"] <= 3 * SAMPLE_RATE + 2 * 400 * SAMPLE_RATE // 1000 for s in speeches)


def test_silence_and_noise_have_no_speech():
    rng = np.random.default_rng(0)
    assert speech_timestamps(np.zeros(20 * SAMPLE_RATE, np.float32)) == []
    noise = (0.05 * rng.standard_normal(20 * SAMPLE_RATE)).astype(np.float32)
    assert speech_timestamps(noise) == []


@pytest.mark.parametrize("bad", [dict(threshold=1.5), dict(threshold="0.5"), dict(neg_threshold=0.9),
                                 dict(min_silence_duration_ms=-1), dict(max_speech_duration_s=0),
                                 dict(speech_pad_ms=float("nan")), dict(min_speech_duration_ms=True),
                                 dict(window_size_samples=512)])
def test_bad_options_are_option_errors(bad):
    with pytest.raises(OptionError, match="vad_parameters"):
        VadOptions.of(bad)


def test_options_of():
    assert VadOptions.of(None) == VadOptions()
    assert VadOptions.of({"threshold": 0.6}, max_speech_duration_s=30) == VadOptions(threshold=0.6, max_speech_duration_s=30)
    with pytest.raises(OptionError, match="dict or a VadOptions"):
        VadOptions.of([0.5])


def test_time_map_hand_computed():
    # speech at 1-2 s and 5-6 s of the original: speech-only 0-1 s is 1-2 s, 1-2 s is 5-6 s
    m = TimeMap([{"start": SAMPLE_RATE, "end": 2 * SAMPLE_RATE}, {"start": 5 * SAMPLE_RATE, "end": 6 * SAMPLE_RATE}])
    assert m.original(0.0) == 1.0 and m.original(0.5) == 1.5
    assert m.original(1.0, is_end=True) == 2.0  # an end at a region's end stays in that region
    assert m.original(1.0) == 5.0  # a start there begins the next one
    assert m.original(1.25) == 5.25 and m.original(2.0, is_end=True) == 6.0
    assert TimeMap([]).original(3.0) == 3.0


def test_pack_chunks_keeps_order_and_limit():
    regions = [{"start": a, "end": b} for a, b in [(0, 10), (20, 25), (30, 50), (60, 100), (110, 115)]]
    assert pack_chunks(regions, 35) == [regions[:3], [regions[3]], [regions[4]]]  # 35 fits; 40 goes alone
    assert pack_chunks(regions, 34) == [regions[:2], [regions[2]], [regions[3]], [regions[4]]]
    assert pack_chunks([], 30) == []


def test_vad_model_is_a_plain_module():
    m = load_vad()
    assert not any(p.requires_grad for p in m.parameters())
    probs, (h, c) = m(torch.zeros(3, FRAME + 64))
    assert probs.shape == (3,) and h.shape == c.shape == (1, 1, 128)
