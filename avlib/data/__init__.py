"""Datasets: manifests, curation, the clip loader and a synthetic audio-visual world.

- :mod:`avlib.data.manifests`  one CSV per dataset (``data_manifests/``), splits, builders
- :mod:`avlib.data.curate`     cut clips from long videos, check what is on disk
- :mod:`avlib.data.dataset`    ``ClipDataset``: clips -> (frames, waveform, label, prompt) examples
- :mod:`avlib.data.synthetic`  clips with known audio-visual events, generated offline

Import from the submodules (this package stays light: the CLI need not load torch).
"""
