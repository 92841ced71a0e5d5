"""Importing hypir needs neither CUDA nor Triton (macOS has no Triton)."""
import subprocess
import sys


def test_import_without_triton():
    code = ("import sys; sys.modules['triton'] = None\n"
            "import hypir\n"
            "from hypir import Restorer, texture_richness, LoraSpec\n"
            "import hypir.cli, hypir.data\n"
            "import torch; print(float(texture_richness(torch.zeros(1, 3, 8, 8))[0]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert abs(float(r.stdout.split()[-1])) < 1e-6


def test_import_is_light():
    r = subprocess.run([sys.executable, "-c", "import sys, hypir; print('diffusers' in sys.modules, 'transformers' in sys.modules)"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.split() == ["False", "False"], r.stdout + r.stderr
