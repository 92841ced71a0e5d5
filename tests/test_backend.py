import pytest
import torch

import hypir_kernels as hk
from hypir_kernels import _extension, backend
from hypir_kernels.testing import runnable_backends


def test_automatic_choice_by_device():
    op = backend.REGISTRY["blend_tiles"]
    assert backend.select(op, "cpu") == "cpu"
    # A CUDA tensor takes the C++ CUDA kernel when it is built (it is, in CI), else Triton.
    assert backend.select(op, "cuda") == ("cuda" if _extension.cuda_built() else "triton")


def test_context_manager_forces_and_restores():
    op = backend.REGISTRY["blend_tiles"]
    with hk.use_backend("reference"):
        assert backend.select(op, "cpu") == "reference"
        with hk.use_backend("auto"):
            assert backend.select(op, "cpu") == "cpu"
        assert backend.select(op, "cpu") == "reference"
    assert backend.select(op, "cpu") == "cpu"


def test_env_var_forces(monkeypatch):
    op = backend.REGISTRY["blend_tiles"]
    monkeypatch.setenv(backend.ENV_VAR, "reference")
    assert backend.select(op, "cpu") == "reference"
    with hk.use_backend("cpu"):  # the context manager wins over the environment
        assert backend.select(op, "cpu") == "cpu"
    monkeypatch.setenv(backend.ENV_VAR, "nonsense")
    with pytest.raises(ValueError, match=backend.ENV_VAR):
        backend.select(op, "cpu")


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="name"):
        with hk.use_backend("gpu"):
            pass


def test_forced_backend_that_cannot_run_raises():
    op = backend.REGISTRY["blend_tiles"]
    with hk.use_backend("cuda"):
        with pytest.raises(RuntimeError, match="cuda backend takes CUDA tensors"):
            backend.select(op, "cpu")


def test_forcing_a_backend_an_op_lacks_keeps_the_automatic_choice():
    op = backend.register("_test_only_op", reference=lambda: "ref", cpu=lambda: "cpu")
    try:
        with hk.use_backend("triton"):
            assert backend.select(op, "cpu") == "cpu"
    finally:
        del backend.REGISTRY["_test_only_op"]


def test_register_requires_reference():
    with pytest.raises(ValueError, match="reference"):
        backend.register("_bad", cpu=lambda: None)


def test_triton_runs_on_cpu_under_the_interpreter():
    # conftest sets TRITON_INTERPRET=1 on machines without a GPU; the Triton tests depend on it.
    if torch.cuda.is_available():
        pytest.skip("with a GPU, Triton runs compiled")
    assert "triton" in runnable_backends("blend_tiles", "cpu")
    assert "cpu" in runnable_backends("blend_tiles", "cpu")


def test_every_op_family_is_in_the_registry_with_a_reference_module():
    """``hk.info()`` lists every op family, and each one's reference lives in hypir_kernels.reference."""
    import inspect

    expected = {"add_noise", "apply_mask", "attention", "blend_tiles", "downsample", "downsample_adjoint", "filter2d",
                "group_norm_silu", "group_norm_silu_backward", "lora_linear_activation", "lora_linear_activation_backward", "mri_adjoint", "mri_forward",
                "separable_filter"}
    assert expected <= set(backend.REGISTRY)
    for name, op in backend.REGISTRY.items():
        assert inspect.getmodule(op.impls["reference"]).__name__.startswith("hypir_kernels.reference."), name
    assert expected <= set(hk.info()["ops"])


def test_torch_composed_cpu_paths_need_no_extension(monkeypatch):
    """Ops registered without a C++ ``kernel_op`` (MRI, down-sampling) keep their fast path when the
    extension is missing; ops backed by it fall back to the reference."""
    monkeypatch.setattr(_extension, "cpu_available", lambda: False)
    backend._AUTO.clear()
    try:
        assert backend.select(backend.REGISTRY["mri_forward"], "cpu") == "cpu"
        assert backend.select(backend.REGISTRY["downsample"], "cpu") == "cpu"
        assert backend.select(backend.REGISTRY["filter2d"], "cpu") == "reference"
        assert backend.select(backend.REGISTRY["blend_tiles"], "cpu") == "reference"
    finally:
        backend._AUTO.clear()
