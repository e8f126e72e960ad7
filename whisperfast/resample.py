"""Band-limited resampling: polyphase windowed-sinc with a Kaiser window, in bounded memory.

`resample(x, orig_sr, new_sr)` for a whole signal; `_Resampler` for streams (push blocks, then flush).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterator, NamedTuple

import numpy as np
import torch

from .errors import AudioError, OptionError

_BLOCK = 1 << 18  # input frames resampled per step (≈6 s at 44.1 kHz)

# ---- resampling: polyphase windowed-sinc, Kaiser window -------------------------------------------------
_ATTEN_DB = 100.0  # stopband attenuation of the Kaiser design
_PASS = 0.90  # passband edge as a fraction of the lower Nyquist; the stopband starts at that Nyquist


class _Design(NamedTuple):
    up: int  # L = new_sr / gcd (times k on the GEMM path: k whole periods per matrix row block)
    down: int  # M = orig_sr / gcd (times k likewise)
    fc: float  # cutoff (-6 dB), cycles per input sample
    half: float  # kernel half-width, input samples
    jh: int  # ceil(half): output k reads inputs floor(kM/L) - Jh .. floor(kM/L) + Jh
    beta: float  # Kaiser window shape
    groups: tuple  # GEMM path: (first row r0, input offset from qM, W [rows, width]) per group; () = per-output path


@lru_cache(maxsize=4)
def _design(orig_sr: int, new_sr: int) -> _Design:
    """The filter for orig_sr -> new_sr, and its weights laid out for GEMMs when that fits in 4M floats.

    Output qL + r (r < L) reads inputs near qM + rM/L. Rows r are split into groups whose input windows
    are about 4 Jh wide, so each group is a dense [rows, width] matrix applied to frames of stride M.
    """
    g = math.gcd(orig_sr, new_sr)
    up, down = new_sr // g, orig_sr // g
    rho = min(1.0, up / down)  # lower Nyquist / input Nyquist
    fc = 0.5 * rho * (1 + _PASS) / 2  # -6 dB point, mid-transition
    width = 0.5 * rho * (1 - _PASS)  # transition width, cycles per input sample
    half = (_ATTEN_DB - 7.95) / (2.285 * 2 * math.pi * width) / 2  # Kaiser's length formula, halved
    jh, beta = math.ceil(half), 0.1102 * (_ATTEN_DB - 8.7)
    k = -(-2 * jh // down)  # merge k periods when M < 2Jh, so frames overlap at most 2x
    n_groups = min(k * up, max(1, k * down // (2 * jh)))  # split a period when M > 2Jh
    bounds = [round(i * k * up / n_groups) for i in range(n_groups + 1)]
    first = [r0 * down // up - jh for r0 in bounds[:-1]]  # input offset of each group from qM
    widths = [(r1 - 1) * down // up + jh + 1 - off for off, r1 in zip(first, bounds[1:])]
    if sum((r1 - r0) * w for r0, r1, w in zip(bounds, bounds[1:], widths)) > 1 << 22:
        return _Design(up, down, fc, half, jh, beta, ())  # odd rates: weights made per block of outputs
    groups = tuple((r0, off, _weights(np.arange(r0, r1)[:, None] * down / up - (off + np.arange(w))[None, :],
                                      fc, half, beta))  # [rows, width]
                   for r0, r1, off, w in zip(bounds, bounds[1:], first, widths))
    return _Design(k * up, k * down, fc, half, jh, beta, groups)


def _kernel(t: np.ndarray, fc: float, half: float, beta: float) -> np.ndarray:
    """Kaiser-windowed sinc at offsets t (input samples), unit DC gain; float64, same shape as t."""
    t = torch.as_tensor(t, dtype=torch.float64)
    arg = (1 - (t / half) ** 2).clamp(min=0).sqrt() * beta
    w = torch.special.i0(arg) / torch.special.i0(torch.tensor(beta, dtype=torch.float64))
    h = 2 * fc * torch.sinc(2 * fc * t) * w
    return torch.where(t.abs() < half, h, 0.0).numpy()


@lru_cache(maxsize=4)
def _fine_kernel(fc: float, half: float, beta: float) -> tuple[np.ndarray, int, int]:
    """The kernel sampled p times per input sample on [-(Jh+1), Jh+1] (~260k points) -> (samples, p, Jh + 1)."""
    n = math.ceil(half) + 1
    p = max(64, (1 << 17) // n)  # linear interpolation error h''/(8 p^2): < 1e-6 of the peak
    return _kernel(np.arange(-n * p, n * p + 2) / p, fc, half, beta), p, n


@lru_cache(maxsize=1)
def _phase_table(orig_sr: int, new_sr: int) -> np.ndarray:
    """Per-output path: the weights of every output phase kM % L -> float32 [L, 2Jh+1]."""
    d = _design(orig_sr, new_sr)
    return _weights(np.arange(d.up)[:, None] / d.up - np.arange(-d.jh, d.jh + 1)[None, :], d.fc, d.half, d.beta)


def _weights(t: np.ndarray, fc: float, half: float, beta: float) -> np.ndarray:
    """_kernel at offsets t by linear interpolation of _fine_kernel -> float32, same shape as t."""
    fine, p, n = _fine_kernel(fc, half, beta)
    u = np.clip((t + n) * p, 0, 2 * n * p)  # beyond +-(Jh+1) the samples are 0
    i = u.astype(np.int64)
    w = u - i
    return (fine[i] * (1 - w) + fine[i + 1] * w).astype(np.float32)


class _Resampler:
    """Streaming resampler: push() blocks of input, flush() at the end; the output equals one-shot resample()."""

    def __init__(self, orig_sr: int, new_sr: int):
        d = self.design = _design(orig_sr, new_sr)
        self.rates, self.gemm = (orig_sr, new_sr), bool(d.groups)
        self.up, self.down, self.jh, self.phases = d.up, d.down, d.jh, None
        self.buf = np.zeros(self.jh, np.float32)  # leading zeros: the signal is zero before sample 0
        self.base, self.k, self.n_in = -self.jh, 0, 0  # input index of buf[0]; next output; inputs seen

    def push(self, x: np.ndarray) -> np.ndarray:
        self.n_in += len(x)
        self.buf = np.concatenate([self.buf, np.asarray(x, np.float32)])
        return self._run(None)

    def flush(self) -> np.ndarray:
        total = -(-self.n_in * self.up // self.down)  # ceil(n_in * new / orig)
        need = (-(-total // self.up) + 1) * self.down + self.jh  # inputs (zeros) past the end that we read
        self.buf = np.concatenate([self.buf, np.zeros(max(0, need - self.base - len(self.buf)), np.float32)])
        return self._run(total)

    def _run(self, total: int | None) -> np.ndarray:
        end = self.base + len(self.buf)  # one past the last input index we hold
        if self.gemm:
            k1 = max(self.k, (end - self.jh) // self.down * self.up)  # whole periods only
        else:
            k1 = max(self.k, -(-(end - self.jh) * self.up // self.down))
        k1 = k1 if total is None else total
        y = np.concatenate([np.zeros(0, np.float32), *self._outputs(self.k, k1)])
        self.k = k1
        keep = (k1 // self.up * self.down if self.gemm else k1 * self.down // self.up) - self.jh
        self.buf, self.base = self.buf[keep - self.base:], keep
        return y

    def _outputs(self, k0: int, k1: int) -> Iterator[np.ndarray]:
        L, M, jh, buf = self.up, self.down, self.jh, self.buf
        if self.gemm:  # blocks of whole periods: y[q, r0:r0+rows] = frames(q*M + off) @ W.T
            q0, q1 = k0 // L, -(-k1 // L)
            per = max(1, (1 << 21) // max(w.shape[1] for _, _, w in self.design.groups))
            for qa in range(q0, q1, per):
                y = np.empty((min(q1, qa + per) - qa, L), np.float32)  # [periods, L]
                for r0, off, w in self.design.groups:
                    frames = np.lib.stride_tricks.as_strided(
                        buf[qa * M + off - self.base:], (len(y), w.shape[1]), (4 * M, 4))  # [periods, width]
                    y[:, r0: r0 + len(w)] = np.ascontiguousarray(frames) @ w.T
                yield y.reshape(-1)[max(0, k0 - qa * L): k1 - qa * L]
            return
        taps, per = np.arange(-jh, jh + 1), max(1, (1 << 20) // (2 * jh + 1))
        if self.phases is None and k1 - k0 >= L // 4 and L * len(taps) <= 1 << 23:  # worth a table
            self.phases = _phase_table(*self.rates)  # [L, 2Jh+1]
        for ka in range(k0, k1, per):  # odd rates: each output's 2Jh+1 weights, by its phase kM % L
            k = np.arange(ka, min(k1, ka + per), dtype=np.int64)
            n0, ph = k * M // L, k * M % L
            w = self.phases[ph] if self.phases is not None else _weights(
                (ph / L)[:, None] - taps[None, :], self.design.fc, self.design.half, self.design.beta)  # [n, 2Jh+1]
            yield np.einsum("kt,kt->k", w, buf[(n0 - self.base)[:, None] + taps[None, :]])


def resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited resampling of a 1-D signal from orig_sr to new_sr Hz -> float32 [ceil(len * new_sr / orig_sr)].

    Kaiser-windowed sinc (100 dB stopband), flat to 0.9 x the lower Nyquist, stopband from that Nyquist.
    Zero delay: output sample k is the band-limited input at time k * orig_sr / new_sr; the signal is taken
    to be zero outside [0, len). Processed in blocks, so temporary memory is bounded for any length.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise AudioError(f"resample: expected a 1-D signal, got shape {tuple(x.shape)}; mix down first")
    for name, rate in (("orig_sr", orig_sr), ("new_sr", new_sr)):
        if int(rate) != rate or rate <= 0:
            raise OptionError(f"resample: {name}={rate!r} must be a positive integer sample rate in Hz")
    if orig_sr == new_sr:
        return x.astype(np.float32, copy=True)
    rs = _Resampler(int(orig_sr), int(new_sr))
    parts = [rs.push(x[i: i + _BLOCK]) for i in range(0, len(x), _BLOCK)]
    return np.concatenate([*parts, rs.flush()])
