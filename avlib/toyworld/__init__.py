"""The toy world: stand-in "pretrained" models trained locally on the synthetic world.

* :mod:`avlib.toyworld.data` -- the toy world's clips, with per-frame state captions.
* :mod:`avlib.toyworld.build` -- train the stand-in text-to-video model (zeroscope's classes at
  tiny sizes) and the stand-in CAVP encoder; ``avlib toyworld build``.
* :mod:`avlib.toyworld.frame_classifier` -- a small CNN that names a frame's class.
* :mod:`avlib.toyworld.metric_nets` -- the toy CLIP and toy video network that score the tiny
  profile's CLIPSIM and FVD; ``avlib toyworld metrics``.
* :mod:`avlib.toyworld.evaluate` -- the acceptance experiment; ``avlib toyworld evaluate``.

The shipped weights live in ``avlib/toyworld/weights`` (``t2v/`` in diffusers layout,
``cavp.safetensors``, ``metrics/``); ``model.pretrained: toyworld`` resolves to them through
:mod:`avlib.named_weights`, which owns these locations (the floors below the toy world load
its weights without importing it).
"""
from avlib.named_weights import CAVP_FILE, METRIC_NETS_DIR, T2V_SUBDIR
from avlib.named_weights import TOYWORLD_WEIGHTS_DIR as WEIGHTS_DIR

__all__ = ["CAVP_FILE", "METRIC_NETS_DIR", "T2V_SUBDIR", "WEIGHTS_DIR"]
