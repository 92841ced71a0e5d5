"""HYPIR's LoRA checkpoints: the released format (peft, r=256, 13 targets), round trips, refusal of
mismatched or unsafe files."""
import pickle

import pytest
import torch

from hypir.models.lora import (HYPIR_TARGETS, LoraSpec, add_lora, load_checkpoint, lora_state_dict, read_checkpoint,
                               save_checkpoint)
from hypir.testing import randomize_lora, tiny_components


def test_released_config_state_dict_loads_with_no_missing_or_unexpected_keys(tmp_path):
    trained = tiny_components(tmp_path / "a", seed=1)
    add_lora(trained.unet)  # the released config: r=256, alpha 256, gaussian init, 13 targets
    randomize_lora(trained.unet)
    state = lora_state_dict(trained.unet)
    # exactly the UNet's parameter names containing "lora", adapter "default"
    assert set(state) == {n for n, _ in trained.unet.named_parameters() if "lora" in n}
    assert all(".default." in k for k in state)
    targeted = {k.split(".lora_")[0].rsplit(".", 0)[0] for k in state}
    assert all(any(t == name or name.endswith("." + t) for t in HYPIR_TARGETS) for name in targeted)
    kinds = {name.split(".")[-1] for name in targeted} | {".".join(name.split(".")[-2:]) for name in targeted}
    for t in HYPIR_TARGETS:  # every released target exists in the SD2 architecture
        assert t in kinds or t.split(".")[-1] in kinds, t
    assert {v.shape[0] for k, v in state.items() if "lora_A" in k} == {256}

    fresh = tiny_components(tmp_path / "b", seed=1)
    spec = load_checkpoint(fresh.unet, state)
    assert spec == LoraSpec(rank=256)
    loaded = lora_state_dict(fresh.unet)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_checkpoint_file_round_trip(tmp_path, suffix):
    c = tiny_components(tmp_path / "tok")
    add_lora(c.unet, LoraSpec(rank=4))
    randomize_lora(c.unet)
    path = save_checkpoint(c.unet, tmp_path / f"w{suffix}")
    assert not path.with_name(path.name + ".tmp").exists()
    back = read_checkpoint(path)
    want = lora_state_dict(c.unet)
    assert back.keys() == want.keys() and all(torch.equal(back[k], want[k]) for k in want)


def _damaged(checkpoint, edit):
    state = read_checkpoint(checkpoint)
    edit(state)
    return state


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop(next(iter(s))), "missing keys: 1"),
    (lambda s: s.__setitem__("down_blocks.0.extra.lora_A.default.weight", torch.zeros(8, 3)), "unexpected keys: 1"),
    (lambda s: s.__setitem__("conv_in.weight", torch.zeros(1)), "unexpected keys: 1 \\(conv_in.weight\\)"),
])
def test_mismatched_checkpoint_is_refused_with_the_keys(tmp_path, checkpoint, edit, message):
    c = tiny_components(tmp_path / "tok")
    before = {k: v.clone() for k, v in c.unet.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        load_checkpoint(c.unet, _damaged(checkpoint["safetensors"], edit))
    after = c.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # base weights untouched


def test_wrong_rank_is_a_shape_mismatch(tmp_path, checkpoint):
    c = tiny_components(tmp_path / "tok")
    with pytest.raises(ValueError, match="shape mismatches"):
        load_checkpoint(c.unet, checkpoint["pth"], LoraSpec(rank=4))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling would create the marker file
        return (open, (self.marker, "w"))


def test_pth_with_a_pickled_object_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"x.lora_A.default.weight": _Payload(str(marker))}, f)
    torch.save({"x.lora_A.default.weight": torch.zeros(1), "obj": _Payload(str(marker))}, tmp_path / "evil2.pth")
    for p in (path, tmp_path / "evil2.pth"):
        with pytest.raises(ValueError, match="refused"):
            read_checkpoint(p)
    assert not marker.exists()


def test_not_a_state_dict_is_refused(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        read_checkpoint(tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="weights: no such file"):
        read_checkpoint(tmp_path / "none.pth")
