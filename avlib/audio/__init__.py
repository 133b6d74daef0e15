"""Audio encoders: CAVP (AudioVisGen's choice) and BEATs (TempoTokens' baseline).

Both are exact re-implementations of their upstream front ends and networks, loading the
official checkpoint files::

    from avlib.audio import build_audio_encoder
    encoder = build_audio_encoder(config.encoder)    # frozen, eval mode
    vectors = encoder.encode(waveform)               # (B, samples) 16 kHz -> (B, T', D)

| encoder | vectors per second | D |
|---|---|---|
| CAVP | 4 (one per 250 ms) | 512 |
| BEATs | 50 (8 frequency patches per 160 ms step) | 768 (last layer) or 9216 (all 12) |
"""
from avlib.audio.beats import BEATsConfig, BEATsEncoder
from avlib.audio.build import build_audio_encoder, tiny_encoder
from avlib.audio.cache import EmbeddingCache
from avlib.audio.cavp import CAVPEncoder
from avlib.audio.checkpoints import (
    load_encoder,
    load_official_beats,
    load_official_cavp,
    resolve_checkpoint,
    save_encoder,
)
from avlib.audio.embed import embed_file, embed_waveform, iter_embeddings
from avlib.audio.encoder import AudioEncoder
from avlib.audio.frontends import FRONTENDS, BEATsFbank, CAVPMelSpectrogram

__all__ = [
    "FRONTENDS", "AudioEncoder", "BEATsConfig", "BEATsEncoder", "BEATsFbank", "CAVPEncoder",
    "CAVPMelSpectrogram", "EmbeddingCache", "build_audio_encoder", "embed_file", "embed_waveform",
    "iter_embeddings", "load_encoder", "load_official_beats",
    "load_official_cavp", "resolve_checkpoint", "save_encoder", "tiny_encoder",
]
