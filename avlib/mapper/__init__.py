"""Audio features -> per-frame pseudo text tokens for the frozen text-to-video model.

``AudioVisGenMapper`` is the report's design (CAVP features, windows, self-attention);
``TempoTokensMapper`` is the baseline, loadable from TempoTokens' released weights. Both
return a :class:`MapperOutput` whose ``frame_tokens[:, f, k]`` fills placeholder
``mapper.placeholder_names[k]`` in frame ``f``'s prompt.
"""
from avlib.mapper.audiovisgen import AudioVisGenMapper
from avlib.mapper.base import FrameTokenMapper, MapperOutput
from avlib.mapper.build import MAPPERS, build_mapper, load_mapper, save_mapper
from avlib.mapper.tempotokens import TempoTokensMapper

__all__ = ["AudioVisGenMapper", "FrameTokenMapper", "MAPPERS", "MapperOutput",
           "TempoTokensMapper", "build_mapper", "load_mapper", "save_mapper"]
