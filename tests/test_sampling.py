"""Sampling (temperature fallback): counter-based noise, the exponential race, batch invariance, seeds."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import clip
from whisperfast.decode.step import draw, mix32, mulmod32, uniform_noise

V = 51864
KEYS = mulmod32(torch.arange(V), 0x9E3779B9)


def test_mulmod32_is_exact():
    x = torch.cat([torch.randint(0, 2 ** 32, (2000,), generator=torch.Generator().manual_seed(0)),
                   torch.tensor([0, 1, 2 ** 32 - 1])])
    for c in (0x7FEB352D, 0x846CA68B, 0x9E3779B9, 0x85EBCA6B, 1, 2 ** 32 - 1):
        assert mulmod32(x, c).tolist() == [(int(v) * c) % 2 ** 32 for v in x]


def test_mix32_matches_lowbias32():
    def lowbias32(x: int) -> int:  # Chris Wellons' reference, in Python integers
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    xs = [0, 1, 2, 12345, 2 ** 31, 2 ** 32 - 1, 0xDEADBEEF]
    assert mix32(torch.tensor(xs)).tolist() == [lowbias32(x) for x in xs]


def test_noise_is_uniform_and_independent():
    u = torch.stack([uniform_noise(torch.tensor([0, 1, 7, 2 ** 31 + 5]), torch.tensor(s), KEYS) for s in range(5)])
    u = u.reshape(20, V)  # 4 rows x 5 steps
    assert 0.0 < float(u.min()) and float(u.max()) < 1.0
    counts = torch.histc(u.flatten(), bins=20, min=0.0, max=1.0)
    expected = u.numel() / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 50.0  # 19 degrees of freedom: p < 2e-4 above 50
    c = torch.corrcoef(u)
    off = c[~torch.eye(20, dtype=torch.bool)]
    assert float(off.abs().max()) < 6 / math.sqrt(V)  # rows and steps are uncorrelated


@pytest.mark.parametrize("t", [0.4, 1.0])
def test_draw_follows_the_softmax(t):
    """Frequencies of `draw` over 20,000 seeds equal softmax(logits / t) (4 standard errors)."""
    W, ids = 64, [17, 30, 50]  # a small vocabulary: 20,000 rows of it
    logits = torch.full((W,), -math.inf)
    logits[ids] = torch.tensor([1.0, 0.5, -0.3])
    n = 20000
    toks = draw(logits.expand(n, W), torch.full((n,), t), torch.arange(n), torch.tensor(3), KEYS[:W])
    p = torch.softmax(logits[ids] / t, dim=0)
    for tok, pi in zip(ids, p.tolist()):
        freq = float((toks == tok).float().mean())
        assert abs(freq - pi) < 4 * math.sqrt(pi * (1 - pi) / n), (tok, freq, pi)
    assert set(toks.tolist()) == set(ids)
    greedy = draw(logits.expand(2, W), torch.zeros(2), torch.tensor([0, 1]), torch.tensor(3), KEYS[:W])
    assert greedy.tolist() == [17, 17]


def test_fallback_sampling_does_not_depend_on_the_batch(tiny_en):
    """ru.wav with tiny.en fails every greedy threshold and is decided by sampling: the same file gives the
    same tokens alone and in two different slots of a batch; another seed gives other tokens."""
    ru, jfk = clip("ru.wav"), clip("jfk.flac")
    alone = tiny_en.transcribe(ru)
    assert alone.segments and all(s.temperature > 0 for s in alone.segments)
    batch = tiny_en.transcribe([ru, jfk, ru], batch_size=3)
    tokens = [[s.tokens for s in r.segments] for r in (alone, batch[0], batch[2])]
    assert tokens[0] == tokens[1] == tokens[2]
    assert batch[1].text == tiny_en.transcribe(jfk).text
    other = tiny_en.transcribe(ru, seed=1)
    assert [s.tokens for s in other.segments] != tokens[0]


def test_seed_option_is_checked(tiny_en):
    from whisperfast.errors import OptionError

    for bad in (-1, 1.5, "1", True, 2 ** 63):
        with pytest.raises(OptionError, match="seed"):
            tiny_en.transcribe(clip("jfk.flac"), seed=bad)
