"""python -m hypir_kernels.tools.gpu_check: refuses without a GPU unless asked, runs its steps in
subprocesses, parses pytest and pytest-benchmark results, writes the Markdown and JSON reports."""
import json
import subprocess
import sys

import pytest
import torch

from hypir_kernels.tools import gpu_check


def test_pytest_counts_reads_the_summary_line():
    out = "....\n=== 3 failed, 120 passed, 4 skipped, 2 deselected in 10.2s ===\n"
    assert gpu_check.pytest_counts(out) == {"failed": 3, "passed": 120, "skipped": 4, "deselected": 2}
    assert gpu_check.pytest_counts("1 error in 0.1s") == {"errors": 1}
    assert gpu_check.pytest_counts("no summary") == {}


def test_benchmark_groups_give_ratios_to_ours(tmp_path):
    path = tmp_path / "b.json"
    stats = lambda ms: {"median": ms / 1e3}  # noqa: E731
    path.write_text(json.dumps({"benchmarks": [
        {"group": "attn", "name": "test_attention_gpu[ours_triton-512]", "stats": stats(4.0)},
        {"group": "attn", "name": "test_attention_gpu[ours-512]", "stats": stats(2.0)},
        {"group": "attn", "name": "test_attention_gpu[sdpa_flash-512]", "stats": stats(1.0)},
        {"group": "blend", "name": "test_gpu_blend[cuda]", "stats": stats(3.0)},
    ]}))
    groups = gpu_check.benchmark_groups(str(path))
    assert groups["attn"]["test_attention_gpu[sdpa_flash-512]"]["ours_over_this"] == 0.5  # ours 2x slower
    assert groups["attn"]["test_attention_gpu[ours-512]"]["ours_over_this"] == 1.0
    assert groups["attn"]["test_attention_gpu[ours_triton-512]"]["ours_over_this"] == 2.0  # not taken as "ours"
    assert groups["blend"]["test_gpu_blend[cuda]"]["ours_over_this"] is None  # no "ours" entry in the group
    assert gpu_check.benchmark_groups(str(tmp_path / "missing.json")) == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a CUDA device")
def test_refuses_without_a_gpu_unless_allowed(tmp_path):
    res = subprocess.run([sys.executable, "-m", "hypir_kernels.tools.gpu_check", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "no CUDA device" in res.stderr


def test_end_to_end_on_the_cpu_writes_both_reports(tmp_path):
    res = subprocess.run([sys.executable, "-m", "hypir_kernels.tools.gpu_check", "--out", str(tmp_path), "--allow-cpu",
                          "--tests", "tests/test_info.py", "--benchmarks", "benchmarks/test_masks.py", "--workers", "1"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["passed"] and [s["name"] for s in report["steps"]] == ["gpu-tests", "gpu-benchmarks", "full-suite"]
    suite = report["steps"][2]
    assert suite["counts"]["passed"] >= 3 and not suite["counts"].get("failed")
    assert report["environment"]["torch"] == torch.__version__
    md = (tmp_path / "gpu-check.md").read_text()
    assert "| full-suite | pass |" in md and "attention(backend='auto')" in md
    assert (tmp_path / "full-suite.log").read_text().startswith(sys.executable)


def test_a_step_past_its_limit_still_reports_what_ran(tmp_path):
    """SIGINT first: pytest prints its counts so far (a plain kill would leave none)."""
    (tmp_path / "test_slow.py").write_text("import time\n\ndef test_quick():\n    pass\n\n"
                                           "def test_slow():\n    time.sleep(120)\n")
    step = gpu_check.Step("slow", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_slow.py")])
    gpu_check.run_step(step, str(tmp_path), timeout=8, grace=20)
    assert step.timed_out and step.returncode == 124 and step.seconds < 60
    assert step.counts.get("passed") == 1, (tmp_path / "slow.log").read_text()


def test_timeout_option_names_the_step(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--out", str(tmp_path), "--allow-cpu", "--timeout", "suite=10"])
    assert "--timeout takes NAME=SECONDS" in capsys.readouterr().err
