"""Model dimensions and generation settings, translated from a checkpoint in exactly one place."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelLoadError


@dataclass(frozen=True)
class ModelConfig:
    """Whisper shapes (`n_*` as openai-whisper names them) plus the generation facts decoding needs."""

    n_mels: int
    n_vocab: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_audio_ffn: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int
    n_text_ffn: int
    # from generation_config.json (optional there; defaults follow openai-whisper)
    alignment_heads: tuple = ()  # ((layer, head), ...)
    suppress_tokens: tuple = ()
    begin_suppress_tokens: tuple = ()
    max_initial_timestamp_index: int = 50

    @classmethod
    def from_hf(cls, config: dict, generation_config: dict | None = None) -> "ModelConfig":
        """`config.json` (+ `generation_config.json`) dicts of a Hugging Face Whisper checkpoint."""
        g = generation_config or {}
        if config.get("model_type", "whisper") != "whisper":
            archs = config.get("architectures")
            raise ModelLoadError(
                f"config.json describes model_type={config.get('model_type')!r} (architectures {archs}); "
                "whisperfast loads Whisper checkpoints only (model_type 'whisper')"
            )
        try:
            d = config["d_model"]
            return cls(
                n_mels=config["num_mel_bins"], n_vocab=config["vocab_size"],
                n_audio_ctx=config.get("max_source_positions", 1500), n_audio_state=d,
                n_audio_head=config["encoder_attention_heads"], n_audio_layer=config["encoder_layers"],
                n_audio_ffn=config.get("encoder_ffn_dim", 4 * d),
                n_text_ctx=config.get("max_target_positions", 448), n_text_state=d,
                n_text_head=config["decoder_attention_heads"], n_text_layer=config["decoder_layers"],
                n_text_ffn=config.get("decoder_ffn_dim", 4 * d),
                alignment_heads=tuple(tuple(h) for h in (g.get("alignment_heads") or ())),
                suppress_tokens=tuple(g.get("suppress_tokens", config.get("suppress_tokens")) or ()),
                begin_suppress_tokens=tuple(
                    g.get("begin_suppress_tokens", config.get("begin_suppress_tokens")) or ()),
                max_initial_timestamp_index=int(first_not_none(g.get("max_initial_timestamp_index"), 50)),
            )
        except KeyError as e:
            raise ModelLoadError(f"config.json lacks the key {e.args[0]!r} that a Whisper config has") from None

    @property
    def multilingual(self) -> bool:
        return self.n_vocab >= 51865

    @property
    def num_languages(self) -> int:
        return self.n_vocab - 51765 - int(self.multilingual)


def first_not_none(*values):
    return next(v for v in values if v is not None)
