"""House rules of the source tree that a review would otherwise have to remember."""
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_no_source_file_over_500_lines_without_saying_why():
    """A long file is usually several concepts; one that is not says why in its header."""
    long = []
    for folder in ("hypir", "hypir_kernels", "tests", "benchmarks", "csrc"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".cpp", ".cu", ".h", ".cuh") or not path.is_file():
                continue
            text = path.read_text(errors="replace")
            if text.count("\n") > 500 and "more than 500 lines" not in text[:4000]:
                long.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not long, long
