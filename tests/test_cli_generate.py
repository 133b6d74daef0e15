import json
import subprocess
import sys

import pytest

from avlib.cli import main
from avlib.media import probe, read_video


def test_generate_text_video_with_muxed_audio(tmp_path, tone_wav):
    out = tmp_path / "out.mp4"
    code = main(["generate", "--profile", "tiny", "--prompt", "rain", "--audio", str(tone_wav),
                 "-o", str(out), "--frames", "24", "--fps", "12", "--steps", "2"])
    assert code == 0
    frames, fps = read_video(out)
    info = probe(out)
    assert frames.shape == (24, 32, 32, 3)
    # The video is its audio window: 24 frames at 12 fps over the 2 s of the clip.
    assert info.has_audio and info.duration_s == pytest.approx(2.0, abs=0.1)
    assert fps == pytest.approx(12.0)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["seed"] == 64 and sidecar["prompt"] == "rain"
    assert sidecar["config"]["profile"] == "tiny" and "torch" in sidecar["versions"]
    assert sidecar["settings"]["num_frames"] == 24 and sidecar["elapsed_s"] > 0
    assert sidecar["settings"]["fps"] == 12 and sidecar["settings"]["audio_seconds"] == 2


def test_generate_uses_the_profiles_window_and_scheduler(tmp_path):
    """Tiny profile, text alone: one window of 8 frames at 8 fps; --scheduler switches the sampler."""
    out = tmp_path / "out.mp4"
    assert main(["generate", "--prompt", "rain", "-o", str(out),
                 "--steps", "2", "--scheduler", "dpm-multistep"]) == 0
    frames, fps = read_video(out)
    assert frames.shape[0] == 8 and fps == pytest.approx(8.0)
    assert probe(out).duration_s == pytest.approx(1.0, abs=0.1)
    assert json.loads(out.with_suffix(".json").read_text())["settings"]["scheduler"] == "dpm-multistep"


def test_same_seed_same_video(tmp_path):
    outs = [tmp_path / f"{i}.mp4" for i in range(2)]
    for out in outs:
        assert main(["generate", "--prompt", "dog", "-o", str(out), "--steps", "2", "--seed", "3"]) == 0
    assert (read_video(outs[0])[0] == read_video(outs[1])[0]).all()


def test_missing_audio_fails_cleanly(tmp_path):
    out = tmp_path / "out.mp4"
    proc = subprocess.run([sys.executable, "-m", "avlib", "generate", "--prompt", "rain", "--audio",
                           str(tmp_path / "nope.wav"), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "audio file not found" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_mapper_without_audio_is_refused(tmp_path, capsys):
    assert main(["generate", "--mapper", str(tmp_path), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "--mapper needs --audio" in capsys.readouterr().err


def test_every_command_has_help():
    from avlib.cli import COMMAND_MODULES, build_parser

    parser = build_parser()
    for name in COMMAND_MODULES:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0


@pytest.mark.parametrize("flags, message", [
    (["--fps", "4"], "inference.audio_seconds=2 differs from the training window data.clip_seconds=1"),
    (["--frames", "4", "--fps", "4"], "frame counts differ"),
])
def test_a_mappers_window_is_checked_where_every_window_is(tmp_path, tone_wav, capsys, flags, message):
    """--frames/--fps that give a mapper another window fail with config's own check, before any model loads."""
    from avlib.config import load_config
    from avlib.run import Run

    Run(tmp_path / "run").write_config(load_config("dog", "tiny"), seed=0)
    out = tmp_path / "o.mp4"
    assert main(["generate", "--mapper", str(tmp_path / "run"), "--audio", str(tone_wav), *flags, "-o", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()
