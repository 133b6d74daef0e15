import pytest

from avlib.config import list_experiments, load_config, parse_overrides
from avlib.errors import ConfigError

TABLE2 = {"volleyball": 10, "thunder": 15, "dog": 20, "dog_text": 20, "multiclass": 20}


def test_every_table2_experiment_is_a_named_config():
    names = list_experiments()
    assert set(TABLE2) | {"tempotokens"} <= set(names)


@pytest.mark.parametrize("name,epochs", TABLE2.items())
def test_paper_profile_carries_table1_hyperparameters(name, epochs):
    cfg = load_config(name, "paper")
    assert cfg.train.epochs == epochs
    assert cfg.train.seed == 64 and cfg.train.batch_size == 1
    assert cfg.train.weight_decay == 0.01
    assert cfg.inference.num_inference_steps == 25 and cfg.inference.guidance_scale == 25
    assert cfg.model.pretrained == "cerspense/zeroscope_v2_576w"
    assert cfg.encoder.name == "cavp"


def test_experiment_specifics():
    assert load_config("dog_text", "paper").prompt == "a dog barking"
    assert load_config("dog", "paper").prompt is None
    multi = load_config("multiclass", "paper")
    assert multi.eval_per_class and multi.data.classes == ["dog", "thunder"]
    baseline = load_config("tempotokens", "paper")
    assert baseline.encoder.name == "beats" and baseline.mapper.kind == "tempotokens"


def test_tiny_profile_overlays_sizes_but_keeps_experiment():
    cfg = load_config("thunder", "tiny")
    assert cfg.model.pretrained == "toyworld" and cfg.model.device == "cpu"
    assert cfg.encoder.checkpoint == "toyworld"  # the toy world's CAVP, not the paper's hub id
    assert load_config("tempotokens", "tiny").encoder.checkpoint is None  # a tiny random BEATs
    assert cfg.inference.height == 32 and cfg.data.dataset == "synth"
    assert cfg.data.classes == ["thunder"] and cfg.name == "thunder" and cfg.profile == "tiny"


def test_overrides_from_cli_strings_and_aliases():
    cfg = load_config("dog", "tiny", ["train.lr=1e-5", "mapper.frame_attention=true", "epochs=3"])
    assert cfg.train.lr == 1e-5 and cfg.mapper.frame_attention is True and cfg.train.epochs == 3
    cfg = load_config("dog", "tiny", {"lr": 1e-6, "text_prompt": "a dog"})
    assert cfg.train.lr == 1e-6 and cfg.prompt == "a dog"
    assert parse_overrides(["mapper.windows=[1, 2]"]) == {"mapper.windows": [1, 2]}


@pytest.mark.parametrize("bad,match", [
    (["train.lrr=1"], "unknown config key 'train.lrr'"),
    (["nosuch.key=1"], "unknown config key 'nosuch'"),
    (["train.epochs=-1"], "train.epochs=-1 must be a positive whole number"),
    (["train.lr=0"], "train.lr=0.0 must be a positive number"),
    (["train.epochs=abc"], "train.epochs' should be int"),
    (["encoder.name=wav2vec"], "encoder.name='wav2vec' is not one of"),
    (["data.synth_layout=mirrored"], "data.synth_layout='mirrored' is not one of"),
    (["train.timestep_power=0"], "train.timestep_power must be > 0"),
    (["train.lr"], "not KEY=VALUE"),
])
def test_bad_overrides_name_the_problem(bad, match):
    with pytest.raises(ConfigError, match=match):
        load_config("dog", "tiny", bad)


def test_unknown_experiment_and_profile_list_the_choices():
    with pytest.raises(ConfigError, match="unknown experiment 'cat'.*dog"):
        load_config("cat")
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config("dog", "huge")


@pytest.mark.parametrize("overrides, message", [
    (["mapper.num_frames=6"], "frame counts differ: data.num_frames=8, mapper.num_frames=6"),
    (["data.num_frames=16", "mapper.num_frames=16", "inference.num_frames=16"],
     "data: 16 frames at 8 fps span 2 s, but data.clip_seconds is 1"),
    (["inference.fps=4"], "inference: 8 frames at 4 fps span 2 s"),
    (["inference.fps=4", "inference.audio_seconds=2"], "differs from the training window"),
    (["data.height=30"], "data.height=30 is not a multiple of 8 .*use 24 or 32"),
    (["inference.width=4"], "inference.width=4 is not a multiple of 8"),
    (["inference.scheduler=euler"], "inference.scheduler='euler' is not one of: dpm-multistep, ddim"),
    (["data.audio_window=padded"], "data.audio_window='padded' is not one of: aligned, report_padded"),
])
def test_inconsistent_windows_and_sizes_are_one_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("dog", "tiny", overrides)


def test_a_consistent_change_of_window_passes():
    config = load_config("dog", "tiny", ["data.fps=4", "data.clip_seconds=2", "inference.fps=4",
                                         "inference.audio_seconds=2"])
    assert config.data.num_frames / config.data.fps == config.inference.audio_seconds == 2


def test_experiment_settings_follow_the_report_then_its_repository():
    dog, mix, volley = (load_config(name, "paper") for name in ("dog", "multiclass", "volleyball"))
    assert (dog.train.epochs, mix.train.epochs, volley.train.epochs) == (20, 20, 10)   # report
    assert dog.train.lr == 1e-6 and mix.train.lr == 1e-5                                # repo
    assert mix.inference.guidance_scale == 25                                           # report over repo's 15
    assert (volley.inference.height, volley.inference.width) == (384, 384)              # repo
    assert dog.inference.scheduler == "dpm-multistep" and dog.mapper.kind == "audiovisgen"
    assert load_config("thunder", "paper").train.train_unet is False                    # report over repo
    # 24 frames at 12 fps over 2 s of CAVP: 8 vectors x 3 rows = exactly 24 frames
    assert dog.data.clip_seconds == dog.inference.audio_seconds == 2.0


def test_runs_written_with_the_retired_keys_still_read():
    """model.cpu_offload and train.lr_grid were never read; runs that recorded them load."""
    from avlib.config import config_from_record

    saved = load_config("dog", "tiny").to_dict()
    saved["model"]["cpu_offload"], saved["train"]["lr_grid"] = False, [1e-4, 1e-5]
    assert config_from_record({"config": saved}) == load_config("dog", "tiny")
    with pytest.raises(ConfigError, match="unknown config key 'train.lr_grid'"):
        load_config("dog", "tiny", ["train.lr_grid=[0.1]"])


@pytest.mark.parametrize("epochs", [0, -2, 2.5, True])
def test_epochs_and_lr_have_one_rule_named_as_each_caller_spells_them(epochs):
    from avlib.config import check_epochs_and_lr
    from avlib.notebook import train_config

    with pytest.raises(ConfigError, match=f"^epochs={epochs!r} must be a positive whole number"):
        train_config("dog", epochs=epochs)               # notebook 04's parameter
    with pytest.raises(ConfigError, match=f"^train.epochs={epochs!r} must be a positive whole number"):
        check_epochs_and_lr(epochs, None)                # what load_config's validation calls
    with pytest.raises(ConfigError, match="^lr=-1 must be a positive number"):
        train_config("dog", lr=-1)


def test_the_vae_size_rule_serves_config_keys_and_cli_flags():
    from avlib.config import check_frame_size

    with pytest.raises(ConfigError, match=r"^--height 30 is not a multiple of 4 \(the VAE .*use 28 or 32"):
        check_frame_size([("--height 30", 30)], 4)
    check_frame_size([("height", 32)], 4)
    with pytest.raises(ConfigError, match=r"^inference.width=36 is not a multiple of 8 \(the VAE .*use 32 or 40"):
        load_config("dog", "tiny", ["inference.width=36"])
