"""``python -m hypir_kernels.tools.gpu_check --out DIR``: one command to check a GPU machine.

Builds nothing and downloads nothing (run it from a source checkout whose extension is built,
e.g. ``python setup.py build_ext --inplace``). Steps, each in its own process with a time limit:

1. environment: ``hypir_kernels.info()`` (device, capability, versions, what the extension holds,
   the attention backend ``auto`` picks on SD2 shapes);
2. the ``gpu`` tests (``pytest -m gpu tests``);
3. the full suite (``pytest tests``; with pytest-xdist, ``-n`` workers with their OpenMP threads
   divided so they do not oversubscribe the CPU);
4. the GPU benchmarks (``pytest benchmarks -m gpu --benchmark-only``): every pytest-benchmark
   group is reported with each entry's median and its ratio to the group's ``ours`` entry.

The steps run in the order 1, 2, 4, 3: the GPU numbers before the longest and least GPU-specific
step. A step past its time limit (``--step-timeout``, or ``--timeout NAME=SECONDS`` for one step)
gets SIGINT first, so pytest still prints its counts so far and pytest-benchmark still writes
what it measured, and is killed with its whole process group 30 s later.

Writes ``DIR/gpu-check.md`` (one report) and ``DIR/gpu-check.json`` (device, versions, per-step
pass/fail counts and wall time, benchmark medians and ratios) plus each step's log. Exit status
0 when every step passed. Without a CUDA device it refuses unless ``--allow-cpu`` (the same steps
on the CPU: the ``gpu`` tests and benchmarks then skip; this is how the tool itself is tested).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

_SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")


@dataclass
class Step:
    name: str
    command: list[str]
    env: dict = field(default_factory=dict, repr=False)  # added to the environment for this step only
    returncode: int | None = None
    seconds: float = 0.0
    counts: dict = field(default_factory=dict)
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 or (self.returncode == 5 and not self.counts.get("failed"))  # 5: nothing collected


def pytest_counts(output: str) -> dict:
    """``{"passed": n, "failed": m, ...}`` from pytest's last summary line."""
    lines = [ln for ln in output.splitlines() if re.search(r"\d+ (passed|failed|skipped|error|deselected)", ln)]
    if not lines:
        return {}
    counts = {}
    for n, word in _SUMMARY.findall(lines[-1]):
        counts["errors" if word.startswith("error") else word] = int(n)
    return counts


def run_step(step: Step, out_dir: str, timeout: float, grace: float = 30.0) -> Step:
    """Run ``step`` with its output in ``out_dir/<name>.log``; past ``timeout`` seconds SIGINT (pytest
    then reports what ran), past ``timeout + grace`` SIGKILL to the step's whole process group."""
    log = os.path.join(out_dir, f"{step.name}.log")
    t0 = time.perf_counter()
    with open(log, "w+") as f:
        f.write(" ".join(step.command) + "\n\n")
        f.flush()
        proc = subprocess.Popen(step.command, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **step.env},
                                start_new_session=True)
        try:
            step.returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            step.timed_out = True
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            step.returncode = 124
        f.seek(0)
        step.counts = pytest_counts(f.read())
    step.seconds = time.perf_counter() - t0
    return step


def benchmark_groups(path: str) -> dict:
    """pytest-benchmark JSON -> ``{group: {entry: {"median_ms", "ours_over_this"}}}``; the ratio
    is this entry's median over the ``ours`` entry's (> 1: ours is faster)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    groups: dict = {}
    for b in data.get("benchmarks", []):
        groups.setdefault(b.get("group") or b["name"], {})[b["name"]] = {"median_ms": b["stats"]["median"] * 1e3}
    for entries in groups.values():
        ours = [v["median_ms"] for k, v in entries.items() if re.search(r"\[ours[-\]]|(^|_)ours(\[|$)", k)]
        for v in entries.values():
            v["ours_over_this"] = None if not ours else round(v["median_ms"] / ours[0], 3)
    return groups


def format_report(env: dict, steps: list[Step], groups: dict) -> str:
    lines = [f"# GPU check — {env.get('cuda_device') or 'no CUDA device'}", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}; hypir_kernels {env.get('hypir_kernels')}, torch {env.get('torch')} "
             f"(CUDA {env.get('torch_cuda')}), triton {env.get('triton')}; extension CUDA part: "
             f"{', '.join(env.get('extension_cuda_archs') or []) or 'not built'}", "",
             "| step | result | counts | seconds |", "|---|---|---|---|"]
    for s in steps:
        result = "timed out" if s.timed_out else ("pass" if s.ok else f"FAIL (rc {s.returncode})")
        counts = ", ".join(f"{v} {k}" for k, v in s.counts.items()) or "-"
        lines.append(f"| {s.name} | {result} | {counts} | {s.seconds:.0f} |")
    if groups:
        lines += ["", "## Benchmarks (median ms; ratio = this / ours, > 1 means ours is faster)", ""]
        for group, entries in groups.items():
            lines += [f"**{group}**", "", "| entry | median ms | ratio |", "|---|---|---|"]
            for name, v in sorted(entries.items(), key=lambda kv: kv[1]["median_ms"]):
                ratio = "-" if v["ours_over_this"] is None else f"{v['ours_over_this']:.2f}x"
                lines.append(f"| {name} | {v['median_ms']:.3f} | {ratio} |")
            lines.append("")
    auto = env.get("attention_auto") or {}
    if auto:
        lines += ["", "## attention(backend='auto') on SD2.1 shapes", ""] + [f"- {k}: {v}" for k, v in auto.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for the report, the JSON and the logs")
    p.add_argument("--allow-cpu", action="store_true", help="run without a CUDA device (tests the tool)")
    p.add_argument("--tests", nargs="+", default=["tests"], help="test paths (default: tests)")
    p.add_argument("--benchmarks", nargs="+", default=["benchmarks"], help="benchmark paths (default: benchmarks)")
    p.add_argument("--skip-suite", action="store_true", help="only the gpu tests and the benchmarks")
    p.add_argument("--workers", type=int, default=None, help="pytest-xdist workers for the full suite (default: cores / 2, max 8)")
    p.add_argument("--step-timeout", type=float, default=420, help="seconds per step")
    p.add_argument("--timeout", action="append", default=[], metavar="NAME=SECONDS",
                   help="time limit of one step (gpu-tests, gpu-benchmarks, full-suite); repeatable")
    a = p.parse_args(argv)
    timeouts = {}
    for item in a.timeout:
        name, _, seconds = item.partition("=")
        if name not in ("gpu-tests", "gpu-benchmarks", "full-suite") or not re.fullmatch(r"\d+(\.\d*)?", seconds):
            p.error(f"--timeout takes NAME=SECONDS with NAME one of gpu-tests, gpu-benchmarks, full-suite; got {item!r}")
        timeouts[name] = float(seconds)

    import torch

    from .. import info

    if not torch.cuda.is_available() and not a.allow_cpu:
        print("gpu_check: no CUDA device (use --allow-cpu to run the same steps on the CPU)", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    env_info = info()
    if torch.cuda.is_available():
        env_info["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    py = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra"]
    bench_json = os.path.join(a.out, "benchmarks.json")
    steps = [Step("gpu-tests", py + ["-m", "gpu", "--benchmark-skip", *a.tests]),
             Step("gpu-benchmarks", py + ["-m", "gpu", "--benchmark-only", f"--benchmark-json={bench_json}", *a.benchmarks])]
    if not a.skip_suite:
        suite, suite_env = py + ["--benchmark-skip", *a.tests], {}
        cores = os.cpu_count() or 1
        workers = a.workers if a.workers is not None else min(8, max(1, cores // 2))
        if workers > 1 and importlib.util.find_spec("xdist") is not None:
            suite[3:3] = ["-n", str(workers)]
            suite_env["OMP_NUM_THREADS"] = str(max(1, cores // workers))  # no oversubscription
        steps.append(Step("full-suite", suite, suite_env))
    for step in steps:
        print(f"gpu_check: {step.name} ...", flush=True)
        run_step(step, a.out, timeouts.get(step.name, a.step_timeout))
        print(f"gpu_check: {step.name}: {'pass' if step.ok else 'FAIL'} {step.counts} in {step.seconds:.0f} s", flush=True)
    groups = benchmark_groups(bench_json)
    report = {"environment": env_info, "steps": [dict(asdict(s), ok=s.ok) for s in steps], "benchmarks": groups,
              "passed": all(s.ok for s in steps)}
    with open(os.path.join(a.out, "gpu-check.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    with open(os.path.join(a.out, "gpu-check.md"), "w") as f:
        f.write(format_report(env_info, steps, groups))
    print(f"gpu_check: report in {os.path.join(a.out, 'gpu-check.md')}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
