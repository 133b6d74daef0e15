import shutil

import pytest
import torch

from avlib.errors import CheckpointError
from avlib.pipeline.t2v import load_t2v, resolve_pretrained
from avlib.pipeline.tiny import tiny_clip_tokenizer


def test_tiny_twin_uses_zeroscopes_classes_frozen(tiny_t2v):
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextModel

    assert isinstance(tiny_t2v.unet, UNet3DConditionModel)
    assert isinstance(tiny_t2v.vae, AutoencoderKL)
    assert isinstance(tiny_t2v.text_encoder, CLIPTextModel)
    for model in (tiny_t2v.unet, tiny_t2v.vae, tiny_t2v.text_encoder):
        assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert tiny_t2v.unet.config.cross_attention_dim == tiny_t2v.text_encoder.config.hidden_size


def test_save_load_round_trip_through_the_local_folder_path(tiny_t2v, tmp_path):
    folder = resolve_pretrained("tiny")
    copy = shutil.copytree(folder, tmp_path / "copy")
    again = load_t2v(str(copy))
    for a, b in zip(tiny_t2v.unet.state_dict().values(), again.unet.state_dict().values()):
        assert torch.equal(a, b)
    ids = again.tokenizer("a dog barking").input_ids
    assert ids == tiny_t2v.tokenizer("a dog barking").input_ids


def test_tiny_tokenizer_handles_any_text():
    tok = tiny_clip_tokenizer()
    ids = tok("a dog barking, zebra 42!").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == "adogbarking,zebra42!"


def test_unresolvable_hub_id_gives_the_offline_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="not found in the cache; run with network once or pass a local path"):
        load_t2v("someone/not-a-cached-model")


def test_folder_missing_parts_is_named(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(CheckpointError, match="missing vae"):
        load_t2v(str(tmp_path))


def test_loading_draws_no_weight_bars_and_leaves_bars_on(capfd):
    """transformers' "Loading weights 36/36" bar cluttered every notebook; downloads keep theirs."""
    from transformers.utils import logging as transformers_logging

    load_t2v("toyworld")
    assert "Loading weights" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()
