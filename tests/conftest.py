"""Test setup. Without a CUDA device the Triton kernels run under the interpreter, so the
environment variable must be set before anything imports triton kernels (Triton decides at
decoration time)."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# ``dtype="auto"`` on the CPU follows the CPU (bf16 where native); results compared against stored
# or restated numbers must not depend on which CPU runs the suite. Tests of the policy unset it.
os.environ.setdefault("HYPIR_AUTO_CPU_DTYPE", "fp32")

# Under pytest-xdist (`-n N`) every worker's OpenMP kernels would use every core: give each its
# share, also for the subprocesses tests start (seen on a 16-core GPU box: -n 15 timed out).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(_threads)
    os.environ["OMP_NUM_THREADS"] = str(_threads)

from hypir_kernels.testing import skip_gpu_tests_without_cuda  # noqa: E402


def pytest_collection_modifyitems(config, items):
    skip_gpu_tests_without_cuda(items)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Bit-for-bit comparisons between two runs need one intra-op thread: with two, the CPU kernels'
    parallel reductions differ run to run (two identical 2-step training runs differed by 3e-6)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
