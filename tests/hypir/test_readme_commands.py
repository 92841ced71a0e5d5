"""Every command the README (and docs/) shows -- ``hypir ...`` and ``python -m ...`` -- names a module or
subcommand that exists and options that its ``--help`` lists, so a renamed module or option cannot
leave a stale command behind."""
import functools
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _documents():
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def commands() -> list[tuple[str, list[str]]]:
    """``(where, tokens)`` of each command: lines of fenced blocks (with ``\\`` continuations
    joined, ``#`` comments dropped) and inline code spans that start with ``hypir`` or ``python -m``."""
    found = []
    for doc in _documents():
        lines, fenced, pending = doc.read_text().splitlines(), False, ""
        for n, line in enumerate(lines, 1):
            if line.strip().startswith("```"):
                fenced = not fenced
                continue
            texts = []
            if fenced:
                text = pending + line.split(" #")[0].strip()
                if text.endswith("\\"):
                    pending = text[:-1] + " "
                    continue
                pending = ""
                texts.append(text)
            else:
                texts += re.findall(r"`([^`]+)`", line)
            for text in texts:
                tokens = text.split()
                if (tokens[:1] == ["hypir"] and len(tokens) > 1) or tokens[:2] == ["python", "-m"]:
                    found.append((f"{doc.name}:{n}", tokens))
    return found


@functools.cache
def help_text(*argv: str) -> str:
    r = subprocess.run([sys.executable, *argv, "--help"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, f"{' '.join(argv)} --help failed: {r.stderr[-500:]}"
    return r.stdout


def _subcommand_chain(tokens: list[str]) -> list[str]:
    chain = []
    for t in tokens:
        choices = re.search(r"\{([a-z,_-]+)\}", help_text("-m", "hypir", *chain))
        if not choices or t not in choices.group(1).split(","):
            break
        chain.append(t)
    return chain


def _options(tokens: list[str]) -> list[str]:
    return [t.split("=")[0] for t in tokens if re.fullmatch(r"--[a-z][a-z0-9-]*(=.*)?", t)]


def test_the_documents_show_commands():
    assert len(commands()) > 40


@pytest.mark.parametrize("where,tokens", commands(), ids=[w for w, _ in commands()])
def test_command_names_existing_module_subcommand_and_options(where, tokens):
    if tokens[0] == "python":
        module, args = tokens[2], tokens[3:]
        if module == "pytest":  # its options are pytest's; the files it is given must exist
            for arg in args:
                if not arg.startswith("-"):
                    assert (ROOT / arg.split("::")[0]).exists(), f"{where}: no such file {arg}"
            return
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{where}: no module {module}"
        if spec.submodule_search_locations is not None:  # a package runs as its __main__
            assert importlib.util.find_spec(module + ".__main__") is not None, f"{where}: {module} has no __main__"
        argv = ["-m", module]
    else:
        args = tokens[1:]
        chain = _subcommand_chain(args)
        assert chain, f"{where}: {' '.join(tokens)} names no hypir subcommand"
        argv = ["-m", "hypir", *chain]
    wanted = _options(args)
    if wanted:
        text = help_text(*argv)
        missing = [o for o in wanted if o not in text]
        assert not missing, f"{where}: {' '.join(argv[1:])} has no option {missing}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation but ``-``/``_`` dropped,
    spaces to ``-``."""
    text = heading.strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_every_relative_link_in_readme_and_docs_resolves():
    """A link to a moved page, a renamed heading or a figure that is gone fails here."""
    broken = []
    for doc in _documents():
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md":
                anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", dest.read_text(), re.M)}
                if anchor not in anchors:
                    broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, broken


def test_readme_stays_a_front_page():
    """The README is the front page (what it is, the two commands, one example per CLI, the headline
    table, links); references live in docs/."""
    assert (ROOT / "README.md").stat().st_size <= 15 * 1024
    readme = (ROOT / "README.md").read_text()
    for page in ("restore", "train", "rsd", "kernels", "performance", "experiments", "limits"):
        assert f"(docs/{page}.md)" in readme, page
