"""The engine: a model + tokenizer with its sessions (one per batch bucket) and compiled code, and the batch
of windows it has encoded (`Encoded`), which owns their cross k/v and the operations on them: detect the
language, decode rows (greedy, sampling, beams, best_of; with temperature fallback), align words.

Rows are independent: each has its own prompt (left-padded into a common prompt bucket), temperature and
timestamp mode, so fallback re-decodes and many files share one fixed batch without recompiling.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..model.whisper import Whisper
from ..tokenizer import Tokenizer
from . import compact, language, timing, window
from .filters import additive_mask, begin_ids, suppressed_ids
from .options import DecodingOptions, DecodingResult
from .rows import Row, RowOutput, pack, readout
from .step import META, Session, compile_for, decode_one_greedy, decode_one_sampling, encode, prefill

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CHECK_EVERY = 8  # steps between the loop's host checks of "all rows done" on CUDA


def bucket(n: int, buckets=BATCH_BUCKETS) -> int:
    return next((b for b in buckets if b >= n), n)


class Engine:
    """A model + tokenizer with its sessions (one per batch bucket), reused across calls."""

    def __init__(self, model: Whisper, tok: Tokenizer, *, compile: bool | None = None):
        self.model, self.tok = model, tok
        self.device, self.dtype = model.device, model.dtype
        self.compile = (self.device.type == "cuda") if compile is None else bool(compile)
        self.sample_len = model.config.n_text_ctx // 2  # openai-whisper's cap on new tokens per window
        self.sessions: dict[tuple[int, int, int], Session] = {}  # (bucket, sample_len, group) -> session
        # the batch whose cross k/v each session holds, while someone holds that batch (compaction writes only
        # into sessions that no live batch holds)
        self.holders: weakref.WeakValueDictionary[Session, Encoded] = weakref.WeakValueDictionary()
        self.compact = True  # move a loop's running rows into a smaller bucket as rows finish (decode/compact.py);
        # eager code also never steps a bucket's rows past the batch's (Session.head)
        self.steps: Counter[int] = Counter()  # decode steps run per batch size (host count: what compaction saves)
        self._masks: dict[tuple, tuple[Tensor, Tensor]] = {}
        self._compiled: dict[tuple, Callable] = {}
        self.beam_pools: dict[tuple, nn.Module] = {}  # (session id, K, size) -> beam.Beams

    def session(self, n: int, sample_len: int, group: int = 1) -> Session:
        """The session of n windows' bucket, `group` rows per window (beams or best_of samples)."""
        key = (bucket(n), sample_len, group)
        if key not in self.sessions:
            self.sessions[key] = Session(self.model.decoder, self.model.config, self.tok, key[0] * group, sample_len,
                                         dtype=self.dtype, device=self.device, group=group)
        return self.sessions[key]

    def compiled(self, fn: Callable, *key: int) -> Callable:
        """`fn` compiled for this model and shape key (see `step.compile_for`); `fn` itself when not compiling."""
        if not self.compile:
            return fn
        if (fn, *key) not in self._compiled:
            self._compiled[(fn, *key)] = compile_for(fn, self.device, *key)
        return self._compiled[(fn, *key)]

    def step_fn(self, sess: Session, sample: bool) -> Callable:
        """The per-token step of a session: the greedy variant, or the one that draws noise."""
        # the group is in the key: a session of g rows per window holds batch/g cross rows (another shape)
        return self.compiled(decode_one_sampling if sample else decode_one_greedy, sess.batch, sess.sample_len,
                             sess.group)

    def masks(self, suppress_tokens, suppress_blank: bool) -> tuple[Tensor, Tensor]:
        key = (suppress_tokens if isinstance(suppress_tokens, (str, type(None))) else tuple(suppress_tokens),
               suppress_blank)
        if key not in self._masks:
            V = self.model.config.n_vocab
            ids = suppressed_ids(self.tok, self.model.config, suppress_tokens)
            self._masks[key] = (additive_mask(ids, V, self.device),
                                additive_mask(begin_ids(self.tok) if suppress_blank else [], V, self.device))
        return self._masks[key]

    @torch.no_grad()
    def encode(self, mel: Tensor, *, batch: int | None = None, sample_len: int | None = None) -> Encoded:
        """Encoder states of `mel` [n, n_mels, 3000] -> cross k/v of rows :n of the session of bucket
        max(n, batch) (`batch` pins the bucket: a fixed batch that never recompiles)."""
        n = mel.shape[0]
        sess = self.session(max(n, batch or 0), sample_len or self.sample_len)
        encode(self.model, mel.to(self.device, self.dtype), sess.cache)  # eager: cuBLAS/SDPA-bound
        enc = Encoded(self, sess, n)
        self.holders[sess] = enc
        return enc

    @torch.no_grad()
    def run(self, sess: Session, rows: list[Row | None], o: DecodingOptions) -> list[RowOutput | None]:
        """Greedy or sampled decode of one window per row of `sess` (cross k/v in place); `None` rows sit idle.
        Reads o.suppress_tokens, o.suppress_blank and o.repetition_guard (stop a row whose last N tokens
        loop one n-gram, checked every CHECK_EVERY steps); each row carries its own temperature."""
        sample = any(r is not None and r.temperature > 0 for r in rows)
        if self.compact and not self.compile:
            sess = sess.head(len(rows))  # eager: the bucket's rows past the batch's never run
        n_steps = self.prefill(sess, rows, o, sample)
        every = CHECK_EVERY if self.device.type == "cuda" else 1  # reading a CPU tensor costs no sync
        cur, held = sess, list(range(sess.batch))  # rows :len(held) of `cur` are rows `held` of `sess`
        step = self.step_fn(cur, sample)
        for i in range(1, n_steps):
            if i % every == 0:
                done = cur.done.cpu()  # the loop's only host sync
                if bool(done.all()):
                    break
                if self.compact:
                    small, held = self.shrink(sess, cur, held, done)
                    if small is not cur:
                        cur, step = small, self.step_fn(small, sample)
            if o.repetition_guard and i % CHECK_EVERY == 0:
                stop_loops(cur, i, o.repetition_guard)
            step(self.model.decoder, cur)
            self.steps[cur.batch] += 1
        if cur is not sess:
            compact.write_back(cur, sess, held)
        return readout(sess, rows)

    def shrink(self, home: Session, cur: Session, held: list[int], done: Tensor) -> tuple[Session, list[int]]:
        """The loop's session after this check: `cur`, or the session of a smaller bucket that the running rows
        of `cur` now fit (and that no live `Encoded` holds), with them moved there; -> (session, held rows)."""
        running = (~done).nonzero()[:, 0].tolist()  # rows of `cur`
        if bucket(len(running)) >= cur.batch or home.group != 1:  # a group's rows share cross rows: not moved
            return cur, held
        small = self.session(len(running), cur.sample_len)
        if small.batch >= cur.batch or small in self.holders:
            return cur, held
        if cur is not home:
            compact.write_back(cur, home, held)  # rows that finished in `cur` keep their outputs
        compact.move(cur, small, running)
        return small, [held[r] for r in running]

    def rules(self, sess: Session, o: DecodingOptions) -> None:
        """The options' suppression masks into the session (the logit rules read them at every step)."""
        suppress, begin = self.masks(o.suppress_tokens, o.suppress_blank)
        sess.suppress.copy_(suppress)
        sess.begin.copy_(begin)

    def prefill(self, sess: Session, rows: list[Row | None], o: DecodingOptions, sample: bool = True) -> int:
        """Write the prompts into the cache, reset the state, store no-speech, select the first token;
        -> the most tokens a row may take (known on the host: the loop starts without a sync)."""
        self.rules(sess, o)
        packed, n_steps = pack(sess, rows, self.model.config.n_text_ctx)
        packed = packed.to(self.device)  # the window's one host -> device copy
        fn = prefill  # compiled on CUDA only: launch-bound there; on CPU a compile per prompt bucket costs more
        if self.device.type == "cuda":
            fn = self.compiled(prefill, sess.batch, sess.sample_len, packed.shape[1] - META, sess.group)
        fn(self.model.decoder, sess, packed, sample or self.compile)  # compiled: one graph for all temperatures
        return n_steps


class Encoded:
    """n windows encoded by `Engine.encode`: their cross k/v sit in rows :n of `sess` (the home session).
    Valid until another batch is encoded into that session (then its operations raise RuntimeError)."""

    def __init__(self, engine: Engine, sess: Session, n: int):
        self.engine, self.sess, self.n = engine, sess, n
        self.size = sess.batch  # the bucket: group sessions hold `group` rows per window of it

    def _check(self, sess: Session) -> Session:
        if self.engine.holders.get(sess) is not self:
            raise RuntimeError("this encoded batch was overwritten by a later Engine.encode into the same "
                               "session; use the newest one (or encode again)")
        return sess

    def rows(self, group: int = 1, sample_len: int | None = None) -> Session:
        """A session whose rows w*group .. w*group+group-1 decode window w (its cross k/v copied once from the
        home session into the session's cross row w when group or sample_len differ from its own)."""
        home = self._check(self.sess)
        dst = self.engine.session(self.size, sample_len or self.engine.sample_len, group)
        if dst is not home and self.engine.holders.get(dst) is not self:
            regroup(home, dst, self.n)
            self.engine.holders[dst] = self
        return dst

    @torch.no_grad()
    def detect_language(self) -> list[tuple[str, dict[str, float]]]:
        """Per window: (best language code, {code: probability}) (openai-whisper's method)."""
        return language.detect_language(self.engine, self._check(self.sess), self.n)

    @torch.no_grad()
    def run(self, rows: list[Row | None], o: DecodingOptions) -> list[RowOutput | None]:
        """One pass at o's settings, row i on window i: greedy/sampling, K beams, or best_of samples."""
        return window.decode_pass(self, o, rows)

    @torch.no_grad()
    def decode(self, options: DecodingOptions, *, temperatures: Sequence[float] | None = None,
               prompts: Sequence | None = None, languages: Sequence[str | None] | None = None,
               needs_fallback: Callable[[DecodingResult], bool] | None = None,
               hold_eot: Sequence[float | None] | None = None) -> list[DecodingResult]:
        """Every window decoded, with temperature fallback (see `window.decode`)."""
        return window.decode(self, options, temperatures=temperatures, prompts=prompts, languages=languages,
                             needs_fallback=needs_fallback, hold_eot=hold_eot)

    @torch.no_grad()
    def align(self, seqs: list[list[int] | None]) -> tuple[list, list]:
        """Per window: cross-attention logits of the alignment heads and the logits of `seqs[w]` (timing.py)."""
        return timing.alignment_weights(self.engine, self._check(self.sess), seqs)


def regroup(src: Session, dst: Session, n: int) -> None:
    """Copy windows' cross k/v from cross rows :n of `src` to those of `dst` (whose rows w*group ..
    w*group+group-1 attend to cross row w)."""
    for i in range(src.cache.n_layer):
        for kind in ("cross_k", "cross_v"):
            dst.cache.layer(kind, i)[:n].copy_(src.cache.layer(kind, i)[:n])


def looping(tokens: list[int], span: int, max_period: int = 16) -> bool:
    """Whether the last `span` tokens are one n-gram (n <= max_period) repeated."""
    if len(tokens) < span:
        return False
    tail = tokens[-span:]
    return any(all(tail[i] == tail[i - p] for i in range(p, span)) for p in range(1, min(max_period, span // 2) + 1))


def stop_loops(sess: Session, step: int, span: int) -> None:
    """Mark rows that loop as done and cut them at `step` (a host check, every CHECK_EVERY steps)."""
    out, done = sess.out[:, :step].cpu().tolist(), sess.done.cpu().tolist()
    for b, (toks, d) in enumerate(zip(out, done)):
        if not d and looping(toks, span):
            sess.done[b] = True
            sess.cap[b] = step
