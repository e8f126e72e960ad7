"""Compaction: a decode loop's running rows moved into the session of a smaller batch bucket, so rows that
have finished stop costing a step (a batch's decode no longer runs every row as long as its longest one).

`move` copies what a row's next steps read — its self and cross k/v, its prompt offset and every per-row
state buffer of `Session` — plus the shared step counters and rule masks; `write_back` returns the per-row
state (not the cache) to the session the loop started in, so `rows.readout` reads the same RowOutput there as
without compaction. Both are plain tensor ops outside the compiled step: on CUDA the small session's CUDA
graph replays on its fixed buffers, now holding the moved rows.
"""

from __future__ import annotations

import torch

from ..cache import KINDS
from .step import ROW_STATE, Session

SHARED = ("step", "pos", "suppress", "begin")


def move(src: Session, dst: Session, rows: list[int]) -> None:
    """Rows `rows` of `src` -> rows :len(rows) of `dst` (its other rows idle: done, they emit EOT only)."""
    k, dev = len(rows), src.out.device
    index = torch.tensor(rows + [rows[0]] * (dst.batch - k), device=dev)  # [dst.batch]; padding: copies, then idle
    for name in ROW_STATE:
        getattr(dst, name).copy_(getattr(src, name).index_select(0, index))
    for name in SHARED:
        getattr(dst, name).copy_(getattr(src, name))
    dst.done[k:] = True
    dst.cache.offset.copy_(src.cache.offset.index_select(0, index))
    for kind in KINDS:
        for i in range(src.cache.n_layer):
            dst.cache.layer(kind, i).copy_(src.cache.layer(kind, i).index_select(0, index))  # [B', H, n, D]


def write_back(src: Session, home: Session, rows: list[int]) -> None:
    """The per-row state of rows :len(rows) of `src` -> rows `rows` of `home`, with the step counters."""
    index = torch.tensor(rows, device=src.out.device)
    for name in ROW_STATE:
        getattr(home, name).index_copy_(0, index, getattr(src, name)[:len(rows)])
    home.step.copy_(src.step)
    home.pos.copy_(src.pos)
