"""Verification helpers shared by the test suite (tiers 1 and 2 of DESIGN §3).

``compare_backends`` runs a public op under every backend that can run on the current machine
and checks each against the ``reference`` backend with dtype-aware tolerances.
"""
from __future__ import annotations

from typing import Callable

import torch

from .. import backend

# (rtol, atol) for comparing a backend with the reference, by dtype. 16-bit tolerances allow a
# couple of output ulps: kernels accumulate in fp32 but may sum in a different order.
TOLERANCES = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def tolerances(dtype: torch.dtype) -> tuple[float, float]:
    return TOLERANCES[dtype]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None, msg: str = "") -> None:
    """Compare with the tolerance of ``dtype`` (default: ``expected.dtype``), shapes and dtypes exact."""
    rtol, atol = tolerances(dtype or expected.dtype)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{msg}\n{m}" if msg else m)


def runnable_backends(op_name: str, device: str = "cpu") -> list[str]:
    """Non-reference backends of ``op_name`` that can run on ``device`` in this process."""
    op = backend.REGISTRY[op_name]
    return [b for b in op.impls if b != "reference" and backend.runnable(op, b, torch.device(device).type)[0]]


def compare_backends(op_name: str, call: Callable[[], torch.Tensor], device: str = "cpu", msg: str = "") -> dict[str, torch.Tensor]:
    """Run ``call`` (which invokes the public op) under the reference and under every other
    runnable backend; assert each is close to the reference. Returns outputs by backend."""
    with backend.use_backend("reference"):
        expected = call()
    outputs = {"reference": expected}
    for name in runnable_backends(op_name, device):
        with backend.use_backend(name):
            outputs[name] = call()
        assert_close(outputs[name], expected, msg=f"{msg} backend={name}")
    return outputs


def skip_gpu_tests_without_cuda(items) -> None:
    """For conftest ``pytest_collection_modifyitems``: skip ``@pytest.mark.gpu`` items cleanly
    when no CUDA device is present."""
    import pytest

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
