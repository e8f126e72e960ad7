"""Language identification: one decoder step after <|startoftranscript|>, softmax over language tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .step import Session

if TYPE_CHECKING:
    from .engine import Engine


@torch.no_grad()
def detect_language(engine: Engine, sess: Session, n: int) -> list[tuple[str, dict[str, float]]]:
    """Rows :n of a session whose cross k/v are filled -> per row (best code, {code: probability})."""
    tok, dev = engine.tok, engine.device
    sess.cache.offset.zero_()
    tokens = torch.full((sess.batch, 1), tok.sot, dtype=torch.long, device=dev)
    h = engine.model.decoder.hidden(tokens, torch.zeros(1, dtype=torch.long, device=dev), sess.cache)
    logits = engine.model.decoder.logits(h[:n, 0])  # [n, V]
    codes = list(tok.language_ids)
    ids = torch.tensor(list(tok.language_ids.values()), device=dev)
    probs = logits[:, ids].softmax(dim=-1).cpu()  # softmax over the language tokens only
    return [(codes[int(row.argmax())], dict(zip(codes, row.tolist()))) for row in probs]
