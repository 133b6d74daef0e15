"""avlib.named_weights: every weight name resolved on the ground floor, without model code."""
import subprocess
import sys

import pytest

from avlib.errors import CheckpointError
from avlib.named_weights import (CAVP_FILE, METRIC_NETS_DIR, T2V_SUBDIR, TOYWORLD_WEIGHTS_DIR, resolve_checkpoint,
                                 t2v_folder, tiny_t2v_folder)


def test_the_toy_world_names_resolve_to_the_shipped_files():
    assert resolve_checkpoint("toyworld") == TOYWORLD_WEIGHTS_DIR / CAVP_FILE
    assert t2v_folder("toyworld") == TOYWORLD_WEIGHTS_DIR / T2V_SUBDIR
    assert (METRIC_NETS_DIR / "clip").is_dir() and (METRIC_NETS_DIR / "video_i3d.safetensors").is_file()


def test_tiny_is_a_cache_folder_and_local_paths_stay_local(tmp_path, monkeypatch):
    monkeypatch.setenv("AVLIB_CACHE", str(tmp_path / "cache"))
    assert t2v_folder("tiny") == tiny_t2v_folder() and tiny_t2v_folder().parent == tmp_path / "cache"
    (tmp_path / "model" / "unet").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="missing vae, text_encoder, tokenizer, scheduler"):
        t2v_folder(str(tmp_path / "model"))
    (tmp_path / "w.pt").write_bytes(b"x")
    assert resolve_checkpoint(tmp_path / "w.pt") == tmp_path / "w.pt"
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        resolve_checkpoint(tmp_path / "absent.pt")


def test_resolving_names_loads_no_model_code():
    """The ground floor: asking where weights are imports neither torch nor avlib's floors above."""
    probe = ("import sys, avlib.named_weights as w; w.resolve_checkpoint('toyworld'); w.t2v_folder('toyworld'); "
             "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('avlib.audio', 'avlib.pipeline', "
             "'avlib.toyworld', 'avlib.metrics'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
