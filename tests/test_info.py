import subprocess
import sys

import torch

import hypir_kernels as hk


def test_info_reports_versions_build_and_backends():
    data = hk.info()
    assert data["hypir_kernels"] == hk.__version__
    assert data["torch"] == torch.__version__  # any supported torch, not only the pinned one
    assert data["extension_cpu"] is True
    row = data["ops"]["blend_tiles"]
    assert row["cpu"] == "cpu"
    assert set(row["implemented"]) == {"cpu", "cuda", "triton", "reference"}
    assert "CPU" in row["registered"]


def test_info_cli():
    out = subprocess.run([sys.executable, "-m", "hypir_kernels.info"], capture_output=True, text=True, check=True).stdout
    assert "blend_tiles" in out and "extension" in out and "torch" in out


def test_info_can_be_called_twice():
    """The first call imported the submodule hypir_kernels.info, which rebound hk.info to it."""
    assert hk.info()["hypir_kernels"] == hk.info()["hypir_kernels"]
    assert callable(hk.info)
