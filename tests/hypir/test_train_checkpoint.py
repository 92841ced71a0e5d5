import torch

from hypir.train import checkpoint


def test_save_load_keep_last_and_atomicity(tmp_path):
    root = tmp_path / "ckpt"
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))])
    for step in (1, 2, 3):
        checkpoint.save(root, step, {"g": {"w": torch.full((2,), float(step))}}, {"g": opt.state_dict()},
                        {"note": step}, keep_last=2)
    assert [p.name for p in checkpoint.list_checkpoints(root)] == ["step-00000002", "step-00000003"]
    (root / ".step-00000009.tmp-1").mkdir()  # a crashed write is never picked up
    (root / "step-00000010").mkdir()  # nor a directory without state.json
    assert checkpoint.resolve("auto", root).name == "step-00000003"
    assert checkpoint.resolve("auto", tmp_path / "none") is None
    torch.manual_seed(5)
    checkpoint.save(root, 4, {"g": {"w": torch.zeros(1)}}, {}, {})
    expected = torch.rand(3)
    tensors, optimizers, state = checkpoint.load(root / "step-00000004")
    assert torch.equal(torch.rand(3), expected)  # RNG state restored
    tensors, optimizers, state = checkpoint.load(root / "step-00000003")
    assert torch.equal(tensors["g"]["w"], torch.full((2,), 3.0)) and state["note"] == 3 and state["step"] == 3
    assert "g" in optimizers


def test_trim_log_keeps_the_steps_up_to_the_resumed_one(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "loss": 0.3}\n{"step": 4, "lo')
    checkpoint.trim_log(log, 2)
    assert log.read_text() == '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n'
    checkpoint.trim_log(log, 0)
    assert log.read_text() == ""
    checkpoint.trim_log(tmp_path / "absent.jsonl", 3)  # nothing to trim
    assert not (tmp_path / "absent.jsonl").exists()
