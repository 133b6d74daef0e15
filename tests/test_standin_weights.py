"""The stand-in weight generator reproduces the reference generator's tensors bit for bit.

tests/fixtures/standin_weights_digest.json was computed once, with the generator that made the
fixtures' upstream outputs; the parity tests (CAVP, BEATs, both mappers, I3D) then check the
same weights through the models.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from avlib import standin_weights

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DIGEST = json.loads((FIXTURES / "standin_weights_digest.json").read_text())
MANIFESTS = sorted(DIGEST["sha256"])


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """The digest's hash: key by key in sorted order, name, dtype and shape, then C-order bytes."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("seed", ["0", "1"])
@pytest.mark.parametrize("manifest", MANIFESTS)
def test_every_manifest_matches_the_reference_digest(manifest, seed):
    state = standin_weights.synth_from_manifest(FIXTURES / manifest, int(seed))
    assert state_sha256(state) == DIGEST["sha256"][manifest][seed]


@pytest.mark.parametrize("seed", ["0", "1"])
def test_beats_predictor_matches_the_reference_digest(seed):
    shapes = json.loads((FIXTURES / "beats_state_dict_shapes.json").read_text())["predictor_shapes"]
    assert state_sha256(standin_weights.synth_state_dict(shapes, int(seed))) == DIGEST["beats_predictor_sha256"][seed]


def test_cavp_values_key_by_key():
    """First, last and exact sum of every CAVP tensor: a mismatch names the key (and so the rule)."""
    state = standin_weights.synth_from_manifest(FIXTURES / "cavp_audio_state_dict_shapes.json", 0)
    assert sorted(state) == sorted(DIGEST["cavp_values"])
    wrong = {}
    for key, (first, last, total) in DIGEST["cavp_values"].items():
        flat = state[key].reshape(-1)
        got = [flat[0].item(), flat[-1].item(), math.fsum(flat.tolist())]   # exact, in any order
        if got != [first, last, total]:
            wrong[key] = got
    assert not wrong, f"differ from the reference: {sorted(wrong)}"


def test_rules_by_name_dtype_and_ties():
    beats = json.loads((FIXTURES / "beats_state_dict_shapes.json").read_text())
    state = standin_weights.synth_from_manifest(FIXTURES / "beats_state_dict_shapes.json", 0)
    for source, copies in beats["tied_keys"].items():
        assert all(torch.equal(state[copy], state[source]) for copy in copies)
    # untied, each copy would have its own draw
    untied = standin_weights.synth_state_dict(beats["shapes"], 0)
    assert not torch.equal(untied[copies[0]], untied[source])

    assert standin_weights.synth_tensor("bn.num_batches_tracked", []).dtype == torch.int64
    var = standin_weights.synth_tensor("bn.running_var", [4096])
    assert var.dtype == torch.float32 and 0.5 <= var.min() and var.max() < 1.5
    norm = standin_weights.synth_tensor("block.LayerNorm.weight", [4096])
    assert abs(norm.mean() - 1) < 0.01 and abs(norm.std() - 0.1) < 0.01
    weight = standin_weights.synth_tensor("fc.weight", [64, 32, 8])
    assert abs(weight.std() * 16 - 1) < 0.05                     # normal / sqrt(32 * 8)
    assert torch.equal(weight, standin_weights.synth_tensor("fc.weight", [64, 32, 8]))
    assert not torch.equal(weight, standin_weights.synth_tensor("fc.weight", [64, 32, 8], seed=1))
