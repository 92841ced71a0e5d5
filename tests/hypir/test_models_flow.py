"""hypir.models.flow: the one step on flow-matching backbones, held to diffusers' own scheduler."""
import pytest
import torch

from hypir.models.flow import DEFAULT_SIGMA, FlowOneStep

diffusers = pytest.importorskip("diffusers")
from diffusers import FlowMatchEulerDiscreteScheduler  # noqa: E402


@pytest.mark.parametrize("sigma", [DEFAULT_SIGMA, 0.5, 1.0])
def test_x0_is_one_euler_step_of_diffusers_scheduler_to_zero(sigma):
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(sigmas=[sigma])
    assert scheduler.sigmas.tolist() == pytest.approx([sigma, 0.0])
    g = torch.Generator().manual_seed(0)
    z_s, v = torch.randn(2, 16, 8, 8, generator=g), torch.randn(2, 16, 8, 8, generator=g)
    expected = scheduler.step(v, scheduler.timesteps[0], z_s).prev_sample
    one = FlowOneStep(sigma, "sd3")
    torch.testing.assert_close(one.x0(z_s, v), expected, rtol=1e-6, atol=1e-6)
    assert one.timestep(2).tolist() == pytest.approx([float(scheduler.timesteps[0])] * 2)  # SD3: 1000 s


def test_model_input_is_diffusers_forward_process_and_x0_inverts_it():
    """z_s = (1 - s) z + s eps is the scheduler's ``scale_noise``; with the true velocity eps - z the
    step recovers z."""
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(sigmas=[0.3])
    g = torch.Generator().manual_seed(1)
    z, eps = torch.randn(1, 16, 4, 6, generator=g), torch.randn(1, 16, 4, 6, generator=g)
    one = FlowOneStep(0.3, "flux")
    z_s = one.model_input(z, eps)
    torch.testing.assert_close(z_s, scheduler.scale_noise(z, scheduler.timesteps[:1], eps))
    torch.testing.assert_close(one.x0(z_s, eps - z), z, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(one.model_input(z), 0.7 * z)  # eps = 0: deterministic
    assert one.timestep(1).tolist() == pytest.approx([0.3])  # Flux takes sigma, scaling inside


def test_bf16_latents_keep_their_dtype_with_fp32_arithmetic():
    one = FlowOneStep()
    z = torch.randn(1, 4, 3, 3).bfloat16()
    out = one.x0(one.model_input(z), z)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ((0.8 * z.float()).bfloat16().float() - 0.2 * z.float()).bfloat16())


@pytest.mark.parametrize("kwargs,arg", [
    (dict(sigma=0.0), "sigma"), (dict(sigma=1.5), "sigma"), (dict(sigma=float("nan")), "sigma"), (dict(sigma=True), "sigma"),
    (dict(backbone="sd2"), "backbone"),
])
def test_bad_arguments_are_named(kwargs, arg):
    with pytest.raises(ValueError, match=f"^{arg}"):
        FlowOneStep(**kwargs)


def test_shape_mismatches_are_named():
    one = FlowOneStep()
    with pytest.raises(ValueError, match="^noise"):
        one.model_input(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 3))
    with pytest.raises(ValueError, match="^velocity"):
        one.x0(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2))
