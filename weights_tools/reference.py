"""Reference outputs from transformers (a test/bench-only dependency) on the same weights and features.

`python -m weights_tools reference CKPT_DIR OUT.json [--clips ...]` writes, for every clip, the token ids
that `WhisperForConditionalGeneration.generate` samples (greedy, fp32, CPU) with and without timestamps,
on features computed by whisperfast (audio zero-padded to 30 s, then log-mel). The parity tests compare
against transformers live when it is installed, and against this file otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def hf_generate(ckpt: str | Path, mel: torch.Tensor, *, timestamps: bool, language: str | None = None,
                task: str = "transcribe", max_new_tokens: int = 224, model=None) -> list[list[int]]:
    """Sampled ids per row (no prompt, no EOT) from transformers' generate on log-mel `mel` [B, n_mels, 3000]."""
    from transformers import WhisperForConditionalGeneration

    hf = model or WhisperForConditionalGeneration.from_pretrained(str(ckpt), dtype=torch.float32).eval()
    g = hf.generation_config
    kwargs = dict(return_timestamps=timestamps, max_new_tokens=max_new_tokens)
    if getattr(g, "is_multilingual", False):
        kwargs.update(language=language or "en", task=task)
    with torch.no_grad():
        gen = hf.generate(mel.float(), return_segments=True, **kwargs)
    # transformers keeps seeking inside a 30 s input after a window that ends on a timestamp pair;
    # openai-whisper's decode() (our reference semantics) is the first window only: its raw result.
    seqs = [segs[0]["result"] if segs else row for segs, row in zip(gen["segments"], gen["sequences"])]
    seqs = torch.stack([torch.as_tensor(s) for s in seqs]) if len({len(s) for s in seqs}) == 1 else seqs
    eot, out = g.eos_token_id, []
    prompt_ids = {g.decoder_start_token_id, g.no_timestamps_token_id}
    prompt_ids |= set((getattr(g, "lang_to_id", None) or {}).values())
    prompt_ids |= set((getattr(g, "task_to_id", None) or {}).values())
    for row in (seqs.tolist() if torch.is_tensor(seqs) else [list(map(int, r)) for r in seqs]):
        i = 0
        while i < len(row) and row[i] in prompt_ids:  # the forced prompt (sot, language, task, notimestamps)
            i += 1
        row = row[i:]
        out.append(row[: row.index(eot)] if eot in row else row)
    return out


def dump_dict(ckpt: str | Path, clips: list[str], language: str | None = None) -> dict:
    """{clip name: {"timestamps": ids, "no_timestamps": ids}} from transformers on whisperfast's features."""
    from transformers import WhisperForConditionalGeneration

    from whisperfast.audio import load_audio
    from whisperfast.features import short_form_features

    cfg = json.loads((Path(ckpt) / "config.json").read_text())
    hf = WhisperForConditionalGeneration.from_pretrained(str(ckpt), dtype=torch.float32).eval()
    result = {}
    for clip in clips:
        mel = short_form_features([load_audio(clip)], cfg["num_mel_bins"])
        result[Path(clip).name] = {
            "timestamps": hf_generate(ckpt, mel, timestamps=True, language=language, model=hf)[0],
            "no_timestamps": hf_generate(ckpt, mel, timestamps=False, language=language, model=hf)[0],
        }
    return result


def dump(ckpt: str | Path, out: str | Path, clips: list[str], language: str | None = None) -> dict:
    result = dump_dict(ckpt, clips, language)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result
