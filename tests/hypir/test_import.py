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


def _imports(path):
    """Absolute module names a file imports (relative imports resolved against its package)."""
    import ast
    from pathlib import Path

    root = Path(__file__).parents[2]
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out += [base] + [f"{base}.{a.name}" for a in node.names]
    return out


def test_the_model_layer_uses_only_the_kernels_public_modules():
    """hypir -> hypir_kernels edges go to public modules: no underscore module, no benchmark."""
    from pathlib import Path

    root = Path(__file__).parents[2]
    bad = []
    for path in sorted((root / "hypir").rglob("*.py")):
        in_bench = path.parent.name == "bench"
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "hypir_kernels" and any(p.startswith("_") or p == "bench" for p in parts[1:]):
                bad.append(f"{path.relative_to(root)}: {name}")
            if parts[:2] == ["hypir", "bench"] and not in_bench:  # benchmarks stay out of the library's graph
                bad.append(f"{path.relative_to(root)}: {name}")
    assert not bad, bad


def test_attention_op_and_its_triton_kernels_do_not_import_each_other():
    from pathlib import Path

    root = Path(__file__).parents[2] / "hypir_kernels"
    assert not any(n.startswith("hypir_kernels.attention_op") for n in _imports(root / "triton" / "attention.py"))
