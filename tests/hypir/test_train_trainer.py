"""The HYPIR trainer end to end on a tiny SD2-architecture model and generated images: what
trains and what stays frozen, resume equality, accumulation equality, export for `hypir restore`."""
import math

import pytest
import torch

from hypir.config import parse
from hypir.train import HypirTrainer, TrainConfig
from hypir.train import checkpoint


def tiny_config(out, **sections) -> TrainConfig:
    data = {
        "model": {"tiny": {"unet_width": 32, "vae_width": 8, "text_width": 32}, "lora_rank": 4},
        "data": {"generated": 6, "crop": 64, "batch_size": 1},
        "discriminator": {"backbone": "conv", "head_channels": 16, "conv_widths": [8, 16]},
        "optim": {"lr_g": 1e-3, "lr_d": 1e-3},
        "run": {"output_dir": str(out), "steps": 2, "log_every": 1, "checkpoint_every": 0, "ema": 0.9},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(name, {}).update(values)
        else:
            data[name] = values
    return parse(TrainConfig, data)


def _state(trainer):
    return {
        "g": {k: p.detach().clone() for k, p in trainer.g_named.items()},
        "d": {k: v.clone() for k, v in trainer._disc.heads.state_dict().items()},
        "ema": {k: v.clone() for k, v in trainer.ema.state_dict().items()},
    }


def test_train_changes_lora_and_head_only(tmp_path):
    trainer = HypirTrainer(tiny_config(tmp_path / "run"), progress=False)
    unet, disc = trainer._net, trainer._disc
    frozen_before = {k: v.clone() for k, v in unet.state_dict().items() if "lora_" not in k and not k.startswith("class_embedding.")}
    vae_before = {k: v.clone() for k, v in trainer.components.vae.state_dict().items()}
    backbone_before = {k: v.clone() for k, v in disc.backbone.state_dict().items()}
    before = _state(trainer)
    assert any("lora_A" in k for k in before["g"]) and any(k.startswith("class_embedding.") for k in before["g"])

    exported = trainer.train()

    after = _state(trainer)
    records = [__import__("json").loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        for key in ("loss_g", "mse", "lpips", "gan_g", "loss_d", "gnorm_g", "gnorm_d"):
            assert math.isfinite(r[key]) and r[key] >= 0, (key, r)
    changed = [k for k in before["g"] if not torch.equal(before["g"][k], after["g"][k])]
    # every lora_A / lora_B tensor gets a gradient (B starts at zero; A's gradient flows once B moved)
    assert all(not torch.equal(before["g"][k], after["g"][k]) for k in before["g"] if "lora_B" in k)
    assert len(changed) > len(before["g"]) // 2
    assert any(not torch.equal(before["d"][k], after["d"][k]) for k in before["d"] if k.endswith("original"))
    assert all(torch.equal(v, unet.state_dict()[k]) for k, v in frozen_before.items())
    assert all(torch.equal(v, trainer.components.vae.state_dict()[k]) for k, v in vae_before.items())
    assert all(torch.equal(v, disc.backbone.state_dict()[k]) for k, v in backbone_before.items())
    # EMA: between the initial and the current weights, not equal to either
    k = next(k for k in after["g"] if "lora_B" in k)
    assert not torch.equal(after["ema"][k], after["g"][k]) and not torch.equal(after["ema"][k], before["g"][k])

    # The export is the released format with the EMA weights, and `Restorer` restores with it.
    from hypir import Restorer
    from hypir.models import read_checkpoint

    state = read_checkpoint(exported)
    assert set(state) == set(after["g"])
    assert torch.equal(state[k], after["ema"][k].to(state[k].dtype))
    restorer = Restorer.from_pretrained(trainer.base_model_dir, exported, device="cpu")
    out = restorer(torch.rand(3, 24, 24), upscale=2)
    assert out.shape == (3, 48, 48) and torch.isfinite(out).all()
    assert checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints")[-1].name == "step-00000002"


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("degradation", [{}, {"preset": "released", "queue_size": 2}], ids=["ours", "released-pool"])
def test_resume_continues_bit_for_bit(tmp_path, degradation):
    """(released-pool: the pool is full when the checkpoint is written and hands out pairs of
    batches before it, so the resumed run needs the pool's contents from the checkpoint.)"""
    straight = HypirTrainer(tiny_config(tmp_path / "a", run={"steps": 4}, degradation=degradation), progress=False)
    straight.train()

    first = HypirTrainer(tiny_config(tmp_path / "b", run={"steps": 2}, degradation=degradation), progress=False)
    first.train()
    resumed = HypirTrainer(tiny_config(tmp_path / "b", run={"steps": 4}, degradation=degradation), progress=False)
    resumed.train(resume="auto")
    assert resumed.step == 4
    if degradation:
        assert straight.pool.filled == 2 and torch.equal(straight.pool.gt, resumed.pool.gt)
        assert straight.pool.prompts == resumed.pool.prompts
    a, b = _state(straight), _state(resumed)
    for group in a:
        for k in a[group]:
            assert torch.equal(a[group][k], b[group][k]), (group, k)
    opt_a, opt_b = straight.opt_g.state_dict()["state"], resumed.opt_g.state_dict()["state"]
    assert all(torch.equal(opt_a[i]["exp_avg_sq"], opt_b[i]["exp_avg_sq"]) for i in opt_a)


def test_resume_rejects_a_different_model(tmp_path):
    first = HypirTrainer(tiny_config(tmp_path / "a", run={"steps": 1}), progress=False)
    first.train()
    other = HypirTrainer(tiny_config(tmp_path / "b", model={"lora_rank": 2}), progress=False)
    with pytest.raises(ValueError, match="resume"):
        other.train(resume=str(checkpoint.list_checkpoints(tmp_path / "a" / "checkpoints")[-1]))


# ---- stage 1: degradation pre-removal of the VAE encoder ----------------------------------------


def _stage1_loss(trainer, batch):
    """The stage-1 objective on one prepared micro-batch, recomputed outside the trainer."""
    lq, target, *_ = trainer._prepare_micro(0, 0, batch)
    with torch.no_grad():
        reference = trainer.encoder_target(target * 2 - 1)
        return float(torch.nn.functional.mse_loss(trainer._net(lq * 2 - 1), reference))


def test_encoder_stage_trains_the_encoder_against_the_frozen_initial_one(tmp_path):
    from hypir.models.sd2 import ENCODER_PREFIXES

    cfg = tiny_config(tmp_path / "enc", stage="encoder", model={"posterior": "mode"}, run={"steps": 6},
                      data={"generated": 1, "flip": False}, degradation={"scale": 2})
    trainer = HypirTrainer(cfg, progress=False)
    vae = trainer.components.vae
    assert trainer.disc is None and trainer.components.unet is None
    assert trainer.g_named and all(k.startswith(ENCODER_PREFIXES) for k in trainer.g_named)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    batch = {"gt": trainer.dataset.sample(0, 0)["gt"][None], "prompt": [""]}
    loss_before = _stage1_loss(trainer, batch)

    exported = trainer.train()

    after = vae.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in trainer.g_named if k.endswith("weight"))
    assert all(torch.equal(before[k], after[k]) for k in after if not k.startswith(ENCODER_PREFIXES))
    # the target network is the encoder as loaded, not the one being trained
    assert all(torch.equal(v, before[k]) for k, v in trainer.encoder_target.vae.state_dict().items())
    assert _stage1_loss(trainer, batch) < loss_before  # one image, one seed: the encoder learned it
    records = [__import__("json").loads(line) for line in (tmp_path / "enc" / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss_g"]) and "loss_d" not in r for r in records)

    # The export is the EMA encoder; stage 2 and the restorer load it in place of the VAE's own.
    from safetensors.torch import load_file

    state = load_file(exported)
    assert exported.name == "encoder.safetensors" and set(state) == set(trainer.g_named)
    assert torch.equal(state["encoder.conv_in.weight"], trainer.ema.state_dict()["encoder.conv_in.weight"])
    stage2 = HypirTrainer(tiny_config(tmp_path / "s2", model={"encoder": str(exported)}, run={"steps": 1}), progress=False)
    assert torch.equal(stage2.components.vae.state_dict()["encoder.conv_in.weight"], state["encoder.conv_in.weight"])
    stage2.train()
    from hypir import Restorer

    lq = torch.rand(3, 24, 24)
    plain = Restorer.from_pretrained(stage2.base_model_dir, stage2.export_path, device="cpu")(lq, upscale=2)
    with_encoder = Restorer.from_pretrained(stage2.base_model_dir, stage2.export_path, encoder=exported,
                                            device="cpu")(lq, upscale=2)
    assert with_encoder.shape == plain.shape and not torch.equal(with_encoder, plain)


def test_encoder_stage_resumes_bit_for_bit(tmp_path):
    def make(out, steps):
        return HypirTrainer(tiny_config(out, stage="encoder", run={"steps": steps}), progress=False)

    straight = make(tmp_path / "a", 3)
    straight.train()
    make(tmp_path / "b", 1).train()
    resumed = make(tmp_path / "b", 3)
    resumed.train(resume="auto")
    for k, p in straight.g_named.items():
        assert torch.equal(p, resumed.g_named[k]), k
    assert all(torch.equal(v, resumed.ema.state_dict()[k]) for k, v in straight.ema.state_dict().items())
    # a stage-1 checkpoint is not a stage-2 one
    with pytest.raises(ValueError, match="resume"):
        HypirTrainer(tiny_config(tmp_path / "c"), progress=False).train(resume=str(tmp_path / "b" / "checkpoints" / "step-00000003"))


# ---- the released schedule and the released export -------------------------------------------


def _record_disc_inputs(trainer):
    seen = []
    trainer._disc.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    return seen


@pytest.mark.parametrize("schedule", ["released", "same-batch"])
def test_schedule_decides_what_the_discriminator_sees(tmp_path, schedule):
    """released: the discriminator steps on the next batch, against fakes the just-updated generator
    makes of it; same-batch: on the generator step's batch and fakes."""
    trainer = HypirTrainer(tiny_config(tmp_path / schedule, run={"schedule": schedule}), progress=False)
    assert trainer.batches_per_step == (2 if schedule == "released" else 1)
    ds = trainer.dataset
    micro = [{"gt": ds.sample(i, 0)["gt"][None], "prompt": [""]} for i in range(trainer.batches_per_step)]
    prepared = [trainer._prepare_micro(0, k, b) for k, b in enumerate(micro)]
    lq, target, prompts, richness, seed = prepared[-1]  # the discriminator's batch
    with torch.no_grad():
        fake_before = trainer.generate(lq, prompts, richness, seed, unet=trainer._net)
    seen = _record_disc_inputs(trainer)
    trainer.train_step(0, micro)
    g_fake, d_real, d_fake = seen  # the generator step's call, then the discriminator step's two
    torch.testing.assert_close(d_real, target * 2 - 1)
    if schedule == "same-batch":
        torch.testing.assert_close(d_fake, g_fake)
    else:
        assert not torch.equal(prepared[0][1], prepared[1][1])  # two different batches
        with torch.no_grad():
            fake_after = trainer.generate(lq, prompts, richness, seed, unet=trainer._net)
        torch.testing.assert_close(d_fake, fake_after)
        assert not torch.allclose(d_fake, fake_before)  # made by the updated generator
    with pytest.raises(ValueError, match="micro: expected"):
        trainer.train_step(1, micro + micro)


def test_micro_batches_cover_each_global_batch_once_in_any_layout():
    from hypir.train.batches import MicroBatches

    def positions(world, acc, groups):
        per_rank = [list(MicroBatches(0, 2, 2, r, world, acc, groups)) for r in range(world)]
        steps = []
        for s in range(2):
            for g in range(groups):
                block = [p for r in range(world) for mb in per_rank[r][(s * groups + g) * acc:(s * groups + g + 1) * acc] for p in mb]
                steps.append(sorted(block))
        return steps

    two_ranks, one_rank = positions(2, 1, 2), positions(1, 2, 2)
    assert two_ranks == one_rank == [list(range(i * 4, i * 4 + 4)) for i in range(4)]
    assert positions(1, 1, 1) == [[0, 1], [2, 3]]


def _official_load(base_model_dir, path, rank):
    """``SD2Enhancer.init_generator`` (XPixelGroup/HYPIR @b61d107, HYPIR/enhancer/sd2.py) restated:
    peft adapter added with diffusers' ``add_adapter``, ``torch.load``, and its strict key assertion."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    from hypir.models.lora import HYPIR_TARGETS

    G = UNet2DConditionModel.from_pretrained(base_model_dir, subfolder="unet")
    G.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(HYPIR_TARGETS)))
    state_dict = torch.load(path, map_location="cpu", weights_only=False)
    G.load_state_dict(state_dict, strict=False)
    required = {k for k in G.state_dict() if "lora" in k}
    assert required == set(state_dict), (sorted(required - set(state_dict))[:3], sorted(set(state_dict) - required)[:3])
    return G, state_dict


@pytest.mark.parametrize("texture", [False, True])
def test_export_released_loads_in_the_official_loader(tmp_path, texture):
    run = {"steps": 1} if not texture else {"steps": 1, "export_released": True}
    trainer = HypirTrainer(tiny_config(tmp_path / "run", model={"texture": texture}, run=run), progress=False)
    assert trainer.exports_released
    exported = trainer.train()
    released = exported.with_name("released_lora.pth")
    G, state = _official_load(trainer.base_model_dir, released, 4)
    ema = trainer.ema.state_dict()
    assert all(v.dtype == torch.float32 for v in state.values())
    assert all(torch.equal(G.state_dict()[k], ema[k].float()) for k in state)
    ours = __import__("hypir.models", fromlist=["read_checkpoint"]).read_checkpoint(exported)
    texture_file = exported.with_name("released_texture.safetensors")
    assert texture_file.is_file() == texture
    if texture:
        from safetensors.torch import load_file

        tex = load_file(texture_file)
        assert tex and all(k.startswith("class_embedding.") for k in tex)
        assert set(tex) | set(state) == set(ours) and not set(tex) & set(state)
    else:
        assert set(state) == set(ours)


def test_export_released_is_off_with_a_texture_embedding_unless_asked(tmp_path):
    trainer = HypirTrainer(tiny_config(tmp_path / "run", run={"steps": 1}), progress=False)
    assert not trainer.exports_released
    exported = trainer.train()
    assert not exported.with_name("released_lora.pth").exists()
    from hypir.models.lora import save_released

    with pytest.raises(ValueError, match="texture_path"):
        save_released(trainer._net, tmp_path / "x.pth")
    with pytest.raises(ValueError, match=r"path: the official loader reads a \.pth"):
        save_released(trainer._net, tmp_path / "x.safetensors", tmp_path / "t.safetensors")


@pytest.mark.usefixtures("one_thread")
def test_sigterm_finishes_the_step_and_checkpoints(tmp_path):
    """The signal arrives inside step 2: the step completes, its checkpoint is written, Interrupted
    names it; resuming from it ends where an uninterrupted run ends."""
    import os
    import signal

    from hypir.train.interrupt import Interrupted

    def kill_at_step_2(step, logs):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    run = {"steps": 4, "checkpoint_every": 0}
    trainer = HypirTrainer(tiny_config(tmp_path / "a", run=run), progress=False)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as e:
        trainer.train(on_step=kill_at_step_2)
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    assert (e.value.step, e.value.exit_code) == (2, 143)
    assert e.value.checkpoint == tmp_path / "a" / "checkpoints" / "step-00000002" and e.value.checkpoint.is_dir()
    assert "stopped by SIGTERM after step 2" in str(e.value)
    resumed = HypirTrainer(tiny_config(tmp_path / "a", run=run), progress=False)
    resumed.train(resume="auto")
    straight = HypirTrainer(tiny_config(tmp_path / "b", run=run), progress=False)
    straight.train()
    for k, v in _state(straight)["g"].items():
        assert torch.equal(v, _state(resumed)["g"][k]), k
