"""hypir.files: readers chosen by content, one-line named errors, atomic writes (issue 28)."""
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from hypir.files import (FileFormatError, atomic_directory, atomic_write, check_keys, detect_format, read_state_dict,
                         read_torch, remove_stale, safetensors_metadata, save_tensors)

STATE = {"a.weight": torch.arange(600, dtype=torch.float32).reshape(20, 30), "b": torch.ones(3, dtype=torch.float64)}


class _Payload:
    """Unpickling it would create the marker file (what a malicious checkpoint does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def files(tmp_path):
    """Good files in every format, and what goes wrong with them."""
    f = {}
    f["safetensors"] = tmp_path / "w.safetensors"
    save_file(STATE, str(f["safetensors"]))
    f["zip"] = tmp_path / "w.pth"
    torch.save(STATE, f["zip"])
    f["legacy"] = tmp_path / "w_legacy.pt"
    torch.save(STATE, f["legacy"], _use_new_zipfile_serialization=False)
    return f


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_format_reads_by_content_whatever_its_suffix(files, tmp_path):
    for kind, path in files.items():
        assert _equal(read_state_dict(path), STATE), kind
        # the same bytes under a misleading suffix read the same
        renamed = tmp_path / f"renamed-{kind}.safetensors"
        renamed.write_bytes(path.read_bytes())
        assert _equal(read_state_dict(renamed), STATE), kind
    assert detect_format(files["safetensors"]) == "safetensors"
    assert detect_format(files["zip"]) == "torch-zip"
    assert detect_format(files["legacy"]) == "pickle"


@pytest.mark.parametrize("kind", ["safetensors", "zip", "legacy"])
@pytest.mark.parametrize("keep", [0, 5, 9, 100, 1000, -1])
def test_a_truncated_file_is_named_in_one_line(files, tmp_path, kind, keep):
    data = files[kind].read_bytes()
    cut = tmp_path / f"cut{files[kind].suffix}"
    cut.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(FileFormatError) as e:
        read_state_dict(cut, "weights")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"weights: {str(cut)!r}: expected a state dict of tensors")
    if keep == 0:
        assert msg.endswith("found an empty file")
    elif keep >= 9:
        assert "truncated" in msg


@pytest.mark.parametrize("protocol", ["zip", "legacy", "plain"])
def test_a_pickle_with_code_is_refused_and_never_run(tmp_path, protocol):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth"
    payload = {"a.weight": torch.zeros(2), "x": _Payload(marker)}
    if protocol == "plain":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=protocol == "zip")
    for read in (lambda: read_state_dict(path, "weights"), lambda: read_torch(path, "resume")):
        with pytest.raises(FileFormatError, match="refused, nothing in it was run") as e:
            read()
        assert "\n" not in str(e.value)
    assert not marker.exists()


def test_other_kinds_of_file_are_named(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("not weights at all")
    with pytest.raises(FileFormatError, match=r"found a file of another kind \(18 bytes, starting b'not weights"):
        read_state_dict(text, "weights")
    nested = tmp_path / "nested.pt"
    torch.save({"model": STATE}, nested)
    with pytest.raises(FileFormatError, match=r"holding a dict, not a state dict \(a flat mapping of names to tensors\)"):
        read_state_dict(nested, "weights")
    assert read_torch(nested, "resume")["model"]["b"].dtype == torch.float64  # nested containers: read_torch
    with pytest.raises(FileFormatError, match="expected a file written by torch.save; found a file of another kind"):
        read_torch(text, "resume")
    with pytest.raises(FileNotFoundError, match="weights: no such file"):
        read_state_dict(tmp_path / "missing.pt", "weights")


def test_damaged_safetensors_header(files, tmp_path):
    data = bytearray(files["safetensors"].read_bytes())
    data[12:20] = b"\xff" * 8  # inside the JSON header
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="damaged safetensors header"):
        read_state_dict(bad)
    with pytest.raises(FileFormatError, match="damaged safetensors header"):
        safetensors_metadata(bad, "checkpoint")
    with pytest.raises(FileFormatError, match="expected a safetensors file; found a torch.save zip archive"):
        safetensors_metadata(files["zip"], "checkpoint")


def test_check_keys_names_missing_unexpected_and_shapes():
    want = {"a.weight": (20, 30), "b": (3,), "c": (1,)}
    state = dict(STATE, extra=torch.zeros(1))
    state["b"] = torch.zeros(4)
    with pytest.raises(FileFormatError) as e:
        check_keys(state, want, "encoder", "x.safetensors", "this VAE's encoder")
    assert str(e.value) == ("encoder: 'x.safetensors': expected this VAE's encoder; found missing keys: 1 (c); "
                            "unexpected keys: 1 (extra); shape mismatches: 1 (b (4,) vs (3,))")
    check_keys(STATE, {"a.weight": (20, 30), "b": (3,)}, "encoder", "x", "y")  # a match passes


def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "sub" / "out.bin"
    with atomic_write(path) as tmp:
        tmp.write_bytes(b"first")
    assert path.read_bytes() == b"first"
    with pytest.raises(OSError, match=r"could not write .*out\.bin.*: boom; the previous file is kept"):
        with atomic_write(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.bin"]  # no temporary left


def test_atomic_directory_replaces_a_folder_whole(tmp_path):
    path = tmp_path / "step-1"
    with atomic_directory(path) as tmp:
        (tmp / "a").write_text("1")
    with atomic_directory(path) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in path.iterdir()) == ["b"]
    with pytest.raises(OSError, match="previous file is kept"):
        with atomic_directory(path) as tmp:
            (tmp / "c").write_text("3")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-1"]
    assert sorted(p.name for p in path.iterdir()) == ["b"]


def test_remove_stale_keeps_what_a_live_writer_owns(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".step-00000002.tmp-{dead_pid}").mkdir()
    (tmp_path / f".w.safetensors.tmp-{dead_pid}").write_text("half")
    (tmp_path / f".w.safetensors.tmp-{os.getppid()}").write_text("a live writer's")
    (tmp_path / "step-00000001").mkdir()
    remove_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".w.safetensors.tmp-{os.getppid()}", "step-00000001"])


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_full_disk_keeps_the_previous_file(tmp_path, suffix):
    """``ulimit -f`` (the file-size limit a full disk looks like to a writer): the write fails with
    one named line, the previous file is intact, no temporary is left."""
    path = tmp_path / f"w{suffix}"
    save_tensors(path, STATE)
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import torch
        from hypir.files import save_tensors
        try:
            save_tensors({str(path)!r}, {{"big": torch.ones(1_000_000)}})
        except OSError as e:
            print(e)
            raise SystemExit(2)
    """)
    res = subprocess.run(["bash", "-c", f'ulimit -f 64; exec "{sys.executable}" -c "$0"', script],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stdout.strip() == (f"could not write {str(path)!r}: the disk is full or a file-size limit was reached; "
                                  "the previous file is kept")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
