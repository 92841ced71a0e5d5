"""Test setup. Without a CUDA device the Triton kernels run under the interpreter, so the
environment variable must be set before anything imports triton kernels (Triton decides at
decoration time)."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hypir_kernels.testing import skip_gpu_tests_without_cuda  # noqa: E402


def pytest_collection_modifyitems(config, items):
    skip_gpu_tests_without_cuda(items)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
