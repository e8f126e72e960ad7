"""Beam search with openai-whisper's semantics (BeamSearchDecoder + MaximumLikelihoodRanker), as session rows.

A window's K beams are K consecutive rows of a session (rows w*K .. w*K+K-1 attend to window w's cross k/v,
held once: model/decoder.py cross_attention).
Each step, every live beam proposes its top K+1 tokens of the filtered log_softmax; a candidate's score is
the beam's cumulative float32 sum plus that log-probability. The window's K*(K+1) candidates are sorted by
score (stable: ties keep beam, then top-k order, as openai's dict insertion order does); EOT candidates met
before K live ones are finished, and join the window's pool in score order while it holds fewer than
round(K * patience); the first K others become the new beams. The step is tensor code: the self-attention
k/v, the token history and the rule state follow the beams by an index gather on the device.

At the first step all K beams of a window are the same sequence; openai's dict keeps one copy of each
candidate, so only beam 0 proposes (the others start at -inf). A window stops when its pool is full or at
its token cap, each window on its own (as if decoded alone), and its beams freeze. `finalize` (host, once
per window) adds the best live beams while the pool holds fewer than K, and the ranker picks the result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from .options import DecodingOptions
from .rows import Row, RowOutput, pack
from .step import META, Session, next_logits, prompt_logits, rules_logprobs

if TYPE_CHECKING:
    from .engine import Engine

NEG_INF = float("-inf")


class Beams(nn.Module):
    """The finished-candidate pool of each window of a session: K beams, at most `size` candidates."""

    def __init__(self, sess: Session, beam_size: int, size: int):
        super().__init__()
        K, B, S, dev = beam_size, sess.batch, sess.sample_len, sess.out.device
        self.K, self.size, self.W = K, size, B // K
        W = self.W
        self.register_buffer("tokens", torch.zeros(W, size + 1, S, dtype=torch.long, device=dev), persistent=False)
        self.register_buffer("score", torch.zeros(W, size + 1, device=dev), persistent=False)  # float32
        self.register_buffer("length", torch.zeros(W, size + 1, dtype=torch.long, device=dev), persistent=False)
        self.register_buffer("n", torch.zeros(W, dtype=torch.long, device=dev), persistent=False)
        self.register_buffer("src", torch.arange(B, device=dev), persistent=False)  # [B] row each beam came from
        rows = torch.arange(B, device=dev)
        self.register_buffer("cand_row", rows.repeat_interleave(K + 1).view(W, K * (K + 1)), persistent=False)
        self.register_buffer("slots", torch.arange(K, device=dev), persistent=False)
        self.register_buffer("first", torch.where(rows % K == 0, 0.0, NEG_INF), persistent=False)
        for t in self.buffers():
            torch._dynamo.mark_static_address(t)


def pool_of(engine: Engine, sess: Session, beam_size: int, size: int) -> Beams:
    """The engine's Beams for a session, K and pool size (allocated once, at fixed addresses)."""
    key = (id(sess), beam_size, size)
    if key not in engine.beam_pools:
        engine.beam_pools[key] = Beams(sess, beam_size, size)
    return engine.beam_pools[key]


def beam_prefill(decoder, sess: Session, beams: Beams, packed: Tensor) -> None:
    """The prompts of every beam row, then the first beam update (from beam 0 of each window)."""
    logits = prompt_logits(decoder, sess, packed)
    sess.sum_logprob.copy_(beams.first)
    beams.n.zero_()
    beams.tokens.fill_(sess.eot)
    beams.score.fill_(NEG_INF)
    update(sess, beams, logits)


def beam_step(decoder, sess: Session, beams: Beams) -> None:
    update(sess, beams, next_logits(decoder, sess))


def update(sess: Session, beams: Beams, logits: Tensor) -> None:
    """One step of openai's BeamSearchDecoder.update for every window, on the device."""
    K, W = beams.K, beams.W
    logits, logprobs = rules_logprobs(sess, logits)
    if logprobs is None:
        logprobs = torch.log_softmax(logits, dim=-1)                            # [B, V]
    top, ids = logprobs.topk(K + 1, dim=-1)                                     # [B, K+1]
    scores = (sess.sum_logprob[:, None] + top).view(W, -1)                      # [W, C], C = K(K+1)
    scores, order = scores.sort(dim=1, descending=True, stable=True)
    ids, rows = ids.view(W, -1).gather(1, order), beams.cand_row.gather(1, order)
    eot = ids == sess.eot
    ahead = (~eot).long().cumsum(1) - (~eot).long()                             # live candidates before each
    frozen = sess.done.view(W, K)[:, 0]                                         # [W]
    pool(sess, beams, eot & (ahead < K), scores, rows, frozen)
    live = (~(~eot & (ahead < K))).to(torch.uint8).sort(dim=1, stable=True).indices[:, :K]  # [W, K] best K live
    own = beams.cand_row[:, ::K + 1]                                            # [W, K] each beam's own row
    src = torch.where(frozen[:, None], own, rows.gather(1, live)).view(-1)      # [B]
    tok = torch.where(frozen[:, None], sess.eot, ids.gather(1, live)).view(-1)
    sess.sum_logprob.copy_(torch.where(frozen[:, None], sess.sum_logprob.view(W, K), scores.gather(1, live)).view(-1))
    follow(sess, src, tok)
    beams.src.copy_(src)
    full = (beams.n >= beams.size) | frozen | (sess.step + 1 >= sess.cap.view(W, K)[:, 0])
    sess.done.copy_(full.repeat_interleave(K))
    sess.step.add_(1)


def pool(sess: Session, beams: Beams, finished: Tensor, scores: Tensor, rows: Tensor, frozen: Tensor) -> None:
    """Add this step's finished candidates [W, C] (in score order) to each window's pool while it has room."""
    W, K, S = beams.W, beams.K, sess.sample_len
    first = (~finished).to(torch.uint8).sort(dim=1, stable=True).indices[:, :K]   # [W, K] finished first
    slot = beams.n[:, None] + beams.slots                                           # [W, K]
    ok = finished.gather(1, first) & (slot < beams.size) & ~frozen[:, None]
    slot = torch.where(ok, slot, beams.size)                                        # the spare slot takes the rest
    toks = sess.out[rows.gather(1, first).view(-1)].view(W, K, S)                   # EOT already sits at `step`
    beams.tokens.scatter_(1, slot[:, :, None].expand(W, K, S), toks)
    beams.score.scatter_(1, slot, scores.gather(1, first))
    beams.length.scatter_(1, slot, sess.step.expand(W, K))
    beams.n.add_(ok.sum(1))


def follow(sess: Session, src: Tensor, tok: Tensor) -> None:
    """Row b continues the sequence of row src[b] with token tok[b]: history and rule state."""
    sess.out.copy_(sess.out.index_select(0, src))
    sess.out.index_copy_(1, sess.step.view(1), tok[:, None])
    sess.hist.copy_(torch.stack([sess.hist.index_select(0, src)[:, 1], tok], dim=1))
    sess.max_ts.copy_(torch.where(tok >= sess.ts_begin, tok, sess.max_ts.index_select(0, src)))


def reorder(sess: Session, beams: Beams, n_slots: int) -> None:
    """The self-attention k/v follow the beams: row b <- row src[b], every layer, in slots :n_slots only (the
    host's bound on the slots written so far, see `written`). Its own compiled unit per bound: in one graph
    with the step's cache write, inductor ordered the two writes of a buffer wrongly on CPU."""
    src, cache = beams.src, sess.cache
    for i in range(cache.n_layer):
        for kind in ("self_k", "self_v"):
            buf = cache.layer(kind, i)[:, :, :n_slots]  # [B, H, n_slots, D]
            buf.copy_(buf.index_select(0, src))


def written(n: int, capacity: int) -> int:
    """A bound on the n cache slots written so far: the next power of two from 32, at most `capacity` (a few
    compiled variants; the copy reads on average < 2x what is written, not the whole cache)."""
    return min(capacity, max(32, 1 << (n - 1).bit_length()))


def score_of(sum_logprob: float, length: int, length_penalty: float | None) -> float:
    """MaximumLikelihoodRanker: sum_logprob / length, or / ((5 + length) / 6) ** length_penalty."""
    penalty = length if length_penalty is None else ((5 + length) / 6) ** length_penalty
    return sum_logprob / penalty if penalty else NEG_INF


def best(candidates: list[tuple[list[int], float]], length_penalty: float | None) -> int:
    """The index of the ranker's choice among (tokens, sum_logprob); the first one on a tie (np.argmax)."""
    return int(np.argmax([score_of(lp, len(t), length_penalty) for t, lp in candidates]))


def finalize(sess: Session, beams: Beams, w: int, eot: int) -> list[tuple[list[int], float]]:
    """Window w's candidates in openai's order: the pool, then live beams by score while fewer than K."""
    n = min(int(beams.n[w]), beams.size)
    toks, lens, scores = beams.tokens[w, :n].tolist(), beams.length[w, :n].tolist(), beams.score[w, :n].tolist()
    out = [(t[:k], s) for t, k, s in zip(toks, lens, scores)]
    live = sess.sum_logprob[w * beams.K:(w + 1) * beams.K].cpu().numpy()
    for j in list(np.argsort(live))[::-1]:
        if len(out) >= beams.K:
            break
        row = sess.out[w * beams.K + j].tolist()
        out.append((row[:row.index(eot)] if eot in row else row, float(live[j])))
    return out


def run_beams(engine: Engine, sess: Session, rows: list[Row | None], o: DecodingOptions) -> list[RowOutput | None]:
    """Beam-search one window per row (rows w*K.. of `sess` decode window w) with o.beam_size,
    o.patience, o.length_penalty and the suppression options. The temperature of the rows is not read
    (openai's beam search neither samples nor scales), nor is repetition_guard."""
    K = o.beam_size
    beams = pool_of(engine, sess, K, round(K * (o.patience or 1.0)))
    engine.rules(sess, o)
    packed, n_steps = pack(sess, [r for r in rows for _ in range(K)], engine.model.config.n_text_ctx)
    packed = packed.to(engine.device)
    prefill = beam_prefill  # compiled on CUDA only, as step.prefill
    if engine.device.type == "cuda":
        prefill = engine.compiled(beam_prefill, sess.batch, sess.sample_len, K, beams.size, packed.shape[1])
    prefill(engine.model.decoder, sess, beams, packed)
    step = engine.compiled(beam_step, sess.batch, sess.sample_len, K, beams.size)
    P, capacity = packed.shape[1] - META, sess.cache.layer("self_k", 0).shape[2]

    def follow_kv(n: int) -> None:  # the slots written so far: the prompt bucket P, then one per step
        n_slots = written(n, capacity)
        engine.compiled(reorder, sess.batch, sess.sample_len, K, beams.size, n_slots)(sess, beams, n_slots)

    follow_kv(P)
    every = 8 if engine.device.type == "cuda" else 1
    for i in range(1, n_steps):
        if i % every == 0 and bool(sess.done.all()):  # the loop's only host sync
            break
        step(engine.model.decoder, sess, beams)
        follow_kv(P + i)
    results: list[RowOutput | None] = []
    for w, r in enumerate(rows):
        if r is None:
            results.append(None)
            continue
        cands = finalize(sess, beams, w, engine.tok.eot)
        toks, lp = cands[best(cands, o.length_penalty)]
        results.append(RowOutput(tokens=toks, sum_logprob=lp, no_speech_prob=float(sess.no_speech[w * K])))
    return results
