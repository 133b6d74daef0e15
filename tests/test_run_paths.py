"""Self-contained run folders: paths resolved at creation, every `--run` command from anywhere."""
import json
import shutil

import pytest

from avlib.cli import main
from avlib.config import load_config
from avlib.run import resolve_run_paths
from avlib.toyworld import CAVP_FILE, T2V_SUBDIR, WEIGHTS_DIR

FAST = ["--set", "train.max_steps=1", "--set", "inference.num_inference_steps=1"]


def test_local_paths_become_absolute_and_hub_ids_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t2v").mkdir()
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "cavp.ckpt").write_bytes(b"x")
    (tmp_path / "w" / "learned_embeds.pth").write_bytes(b"x")
    config = resolve_run_paths(load_config("dog", "paper", [
        "model.pretrained=t2v", "encoder.checkpoint=w/cavp.ckpt", "data.root=clips",
        "data.manifest=m.csv", "mapper.checkpoint=w/learned_embeds.pth"]))
    assert config.model.pretrained == str(tmp_path / "t2v")
    assert config.encoder.checkpoint == str(tmp_path / "w" / "cavp.ckpt")
    assert config.mapper.checkpoint == str(tmp_path / "w" / "learned_embeds.pth")
    assert (config.data.root, config.data.manifest) == (str(tmp_path / "clips"), str(tmp_path / "m.csv"))
    paper = resolve_run_paths(load_config("dog", "paper"))
    assert paper.model.pretrained == "cerspense/zeroscope_v2_576w"
    assert paper.encoder.checkpoint == "SimianLuo/Diff-Foley::diff_foley_ckpt/cavp_epoch66.ckpt"
    tiny = resolve_run_paths(load_config("dog", "tiny"))
    assert (tiny.model.pretrained, tiny.encoder.checkpoint, tiny.data.root) == ("toyworld", "toyworld", None)


@pytest.mark.parametrize("key, message", [("encoder.checkpoint=BEATs.pt", "checkpoint file not found"),
                                          ("mapper.checkpoint=learned_embeds.pth", "mapper weights not found")])
def test_a_missing_checkpoint_fails_when_the_run_is_created(tmp_path, monkeypatch, capsys, key, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "present.pt").write_bytes(b"x")  # the other checkpoint is there
    assert main(["train", "--experiment", "tempotokens_baseline", "--profile", "paper",
                 "--set", "encoder.checkpoint=present.pt", "--set", "mapper.checkpoint=present.pt",
                 "--set", key, "--set", "model.device=cpu", "--out", "run"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_made_with_relative_paths_works_moved_and_from_another_folder(tmp_path, monkeypatch, tone_wav):
    made, elsewhere = tmp_path / "made", tmp_path / "elsewhere"
    (made / "weights").mkdir(parents=True)
    elsewhere.mkdir()
    shutil.copytree(WEIGHTS_DIR / T2V_SUBDIR, made / "weights" / "t2v")
    shutil.copy(WEIGHTS_DIR / CAVP_FILE, made / "weights" / "cavp.safetensors")
    monkeypatch.chdir(made)
    assert main(["data", "synth", "--out", "clips", "--clips-per-class", "2", "--classes", "dog",
                 "--size", "32", "--fps", "8", "--seconds", "1"]) == 0
    assert main(["train", "--experiment", "dog", "--out", "runs/dog", *FAST,
                 "--set", "model.pretrained=weights/t2v", "--set", "data.root=clips",
                 "--set", "encoder.checkpoint=weights/cavp.safetensors"]) == 0
    saved = json.loads((made / "runs" / "dog" / "config.json").read_text())["config"]
    assert saved["model"]["pretrained"] == str(made / "weights" / "t2v")
    assert saved["encoder"]["checkpoint"] == str(made / "weights" / "cavp.safetensors")
    assert saved["data"]["root"] == str(made / "clips")

    moved = tmp_path / "archive" / "dog"
    shutil.move(made / "runs" / "dog", moved)
    monkeypatch.chdir(elsewhere)
    assert main(["sample", "--run", str(moved), "--limit", "1"]) == 0
    assert main(["evaluate", "--run", str(moved), "--metrics", "av-align", "--quiet", "--workers", "1"]) == 0
    assert json.loads((moved / "metrics.json").read_text())["metrics"]["av_align"]["n"] == 1
    assert main(["generate", "--mapper", str(moved), "--audio", str(tone_wav), "-o", "out.mp4"]) == 0
    assert (elsewhere / "out.mp4").is_file()
    assert main(["train", "--resume", str(moved), "--set", "train.max_steps=2"]) == 0
    assert len((moved / "losses.csv").read_text().splitlines()) == 3
    assert main(["report", "--runs", str(moved), "-o", "t.csv"]) == 0
    assert str(moved) in (elsewhere / "t.csv").read_text()
