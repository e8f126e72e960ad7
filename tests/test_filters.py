"""The tensor logit rules equal a direct transcription of openai-whisper's loop-based filters
(SuppressBlank, SuppressTokens, ApplyTimestampRules) on random logits and random token histories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from whisperfast.decode.step import host_rules, select, tensor_rules


def reference_filter(logits, sampled, *, tb, eot, no_ts, max_initial, suppress, begin, ts_on, hold=0):
    """openai-whisper decoding.py, one row, written with Python branches as there; `hold` (a timestamp id, ours:
    Row.hold_eot): EOT banned until a timestamp >= hold was sampled."""
    x = logits.copy()
    if len(sampled) == 0:
        x[begin] = -np.inf
    x[suppress] = -np.inf
    if max([t for t in sampled if t >= tb], default=tb - 1) < hold:
        x[eot] = -np.inf
    if not ts_on:
        return x
    x[no_ts] = -np.inf
    last_was = len(sampled) >= 1 and sampled[-1] >= tb
    pen_was = len(sampled) < 2 or sampled[-2] >= tb
    if last_was:
        if pen_was:
            x[tb:] = -np.inf
        else:
            x[:eot] = -np.inf
    stamps = [t for t in sampled if t >= tb]
    if stamps:
        last = stamps[-1] if last_was and not pen_was else stamps[-1] + 1
        x[tb:last] = -np.inf
    if len(sampled) == 0:
        x[:tb] = -np.inf
        x[tb + max_initial + 1:] = -np.inf
    lp = torch.log_softmax(torch.from_numpy(x), -1).numpy()
    if np.logaddexp.reduce(lp[tb:]) > lp[:tb].max():
        x[:tb] = -np.inf
    return x


def random_history(rng, k, tb, eot, n_ts=1501):
    """k sampled ids: text tokens and non-decreasing timestamps, as a decoder could produce."""
    out, t = [], int(rng.integers(0, 40))
    for _ in range(k):
        if rng.random() < 0.4:
            t += int(rng.integers(0, 3))
            out.append(tb + min(t, n_ts - 1))
        else:
            out.append(int(rng.integers(0, eot)))
    return out


def masked_session(m):
    """The engine's cached 8-row session with the default suppress masks; -> (session, suppress, begin)."""
    eng = m.engine
    sess = eng.session(8, eng.sample_len)
    suppress, begin = eng.masks("-1", True)
    sess.suppress.copy_(suppress)
    sess.begin.copy_(begin)
    return sess, suppress, begin


def random_rows(m, sess, rng, k, ts_shift=0.0):
    """Random histories of k ids, timestamp flags and logits [8, V] written into the session's rule state (no
    EOT holds: the cached session may keep an earlier decode's); -> (hist, ts_on, logits)."""
    tok, V = m.tokenizer, m.config.n_vocab
    tb = tok.timestamp_begin
    hist = [random_history(rng, k, tb, tok.eot) for _ in range(8)]
    ts_on = rng.random(8) < 0.8
    logits = rng.normal(0, 3, size=(8, V)).astype(np.float32)
    logits[:, tb:] += rng.normal(0, 3, size=(8, 1)).astype(np.float32) + ts_shift  # timestamps competitive
    sess.step.fill_(k)
    sess.hist.copy_(torch.tensor([[h[-2] if k >= 2 else 0, h[-1] if k >= 1 else 0] for h in hist]))
    sess.max_ts.copy_(torch.tensor([max([t for t in h if t >= tb], default=tb - 1) for h in hist]))
    sess.ts_on.copy_(torch.from_numpy(ts_on))
    sess.done.zero_(), sess.sum_logprob.zero_(), sess.temperature.zero_(), sess.cap.fill_(224)
    sess.eot_ts.zero_()
    return hist, ts_on, logits


def reference_row(m, logits, hist, ts_on, suppress, begin, hold=0):
    tok = m.tokenizer
    return reference_filter(logits, hist, tb=tok.timestamp_begin, eot=tok.eot, no_ts=tok.no_timestamps,
                            max_initial=m.config.max_initial_timestamp_index,
                            suppress=(suppress == -np.inf).nonzero().flatten().numpy(),
                            begin=(begin == -np.inf).nonzero().flatten().numpy(), ts_on=bool(ts_on), hold=hold)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, 9])
def test_rules_match_openai(tiny_en, k):
    sess, suppress, begin = masked_session(tiny_en)
    rng = np.random.default_rng(k)
    for trial in range(6):
        hist, ts_on, logits = random_rows(tiny_en, sess, rng, k)
        select(sess, torch.from_numpy(logits.copy()), sample=False)
        for b in range(8):
            ref = reference_row(tiny_en, logits[b], hist[b], ts_on[b], suppress, begin)
            want = int(ref.argmax())
            assert int(sess.out[b, k]) == want, (trial, b, hist[b])
            lp = torch.log_softmax(torch.from_numpy(ref), -1)[want].item()
            assert abs(sess.sum_logprob[b].item() - lp) < 1e-4  # float32 log-softmax of two kernels


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, 9])
def test_host_rules_equal_tensor_rules_bit_for_bit(tiny_en, k):
    """Eager CPU steps ban id ranges as slices from the state read on the host (`host_rules`); compiled code runs
    the tensor form (`tensor_rules`). Same logits, -inf included, and the log-softmax handed back (when no row
    was forced to a timestamp) equals the one select would compute; both also equal openai's filters (with
    rows holding EOT until a timestamp, Row.hold_eot)."""
    sess, suppress, begin = masked_session(tiny_en)
    tb = tiny_en.tokenizer.timestamp_begin
    rng = np.random.default_rng(100 + k)
    handed_back = forced = held = 0
    for trial in range(8):
        # odd trials: timestamps 8 lower, so no row is forced to one
        hist, ts_on, logits = random_rows(tiny_en, sess, rng, k, ts_shift=-8.0 if trial % 2 else 0.0)
        holds = [int(tb + rng.integers(0, 60)) if rng.random() < 0.5 else 0 for _ in range(8)]
        sess.eot_ts.copy_(torch.tensor(holds))
        want = tensor_rules(sess, torch.from_numpy(logits))
        got, logprobs = host_rules(sess, torch.from_numpy(logits))
        assert torch.equal(got, want), (trial, k)
        if logprobs is None:
            forced += 1
        else:
            handed_back += 1
            assert torch.equal(logprobs, torch.log_softmax(want, dim=-1))
        for b in range(8):
            ref = reference_row(tiny_en, logits[b], hist[b], ts_on[b], suppress, begin, hold=holds[b])
            assert np.array_equal(got[b].numpy(), ref), (trial, b, hist[b])
            held += max([t for t in hist[b] if t >= tb], default=tb - 1) < holds[b]
    assert held and forced and (handed_back or k == 0)  # both branches ran (at the first step text is banned: forced)


def test_suppress_list_matches_openai_non_speech(tiny_en, base):
    """The checkpoints' suppress_tokens equal openai-whisper's non-speech list + its special ids."""
    for m in (tiny_en, base):
        tok = m.tokenizer
        ours = set(m.config.suppress_tokens)
        want = set(tok.non_speech_tokens) | set(tok.special_suppress)
        assert ours == want, (sorted(ours - want), sorted(want - ours))


def test_done_rows_emit_eot_and_keep_their_score(tiny_en):
    eng = tiny_en.engine
    sess = eng.session(2, eng.sample_len)
    sess.step.fill_(3), sess.done.copy_(torch.tensor([True, False])), sess.sum_logprob.fill_(-1.5)
    sess.ts_on.zero_(), sess.temperature.zero_(), sess.cap.fill_(224), sess.eot_ts.zero_()
    select(sess, torch.randn(2, tiny_en.config.n_vocab, generator=torch.Generator().manual_seed(0)), sample=False)
    assert int(sess.out[0, 3]) == tiny_en.tokenizer.eot and sess.sum_logprob[0].item() == -1.5
    assert sess.sum_logprob[1].item() < -1.5
