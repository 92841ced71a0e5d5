"""hypir.config: YAML -> typed dataclasses, errors naming the dotted key."""
from dataclasses import dataclass, field
from typing import Literal

import pytest

from hypir.config import load_yaml, parse, to_dict


@dataclass(frozen=True)
class Inner:
    size: int = 3
    ratio: float = 0.5
    pair: tuple[float, float] = (1.0, 2.0)

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"size: expected >= 1, got {self.size}")


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=lambda: Inner(size=7))
    mode: Literal["a", "b"] = "a"
    path: str | None = None
    sizes: tuple[int, ...] = (1,)
    flag: bool = False


def test_parse_converts_and_keeps_defaults():
    c = parse(Outer, {"name": "x", "inner": {"ratio": 2}, "sizes": [4, 5], "flag": True, "path": None})
    assert c == Outer("x", Inner(size=7, ratio=2.0), "a", None, (4, 5), True)
    assert isinstance(c.inner.ratio, float)
    assert to_dict(c) == {"name": "x", "inner": {"size": 7, "ratio": 2.0, "pair": [1.0, 2.0]}, "mode": "a",
                          "path": None, "sizes": [4, 5], "flag": True}
    assert parse(Outer, to_dict(c)) == c


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "colour": 1}, r"^colour: unknown key"),
    ({"name": "x", "inner": {"sise": 1}}, r"^inner\.sise: unknown key"),
    ({}, r"^name: required"),
    ({"name": 3}, r"^name: expected a string"),
    ({"name": "x", "inner": {"size": 2.5}}, r"^inner\.size: expected an integer"),
    ({"name": "x", "inner": {"size": True}}, r"^inner\.size: expected an integer"),
    ({"name": "x", "inner": {"ratio": "fast"}}, r"^inner\.ratio: expected a finite number"),
    ({"name": "x", "inner": {"ratio": float("nan")}}, r"^inner\.ratio: expected a finite number"),
    ({"name": "x", "inner": {"pair": [1]}}, r"^inner\.pair: expected a list of 2 values"),
    ({"name": "x", "inner": {"size": 0}}, r"^inner\.size: expected >= 1"),
    ({"name": "x", "mode": "c"}, r"^mode: expected one of 'a', 'b'"),
    ({"name": "x", "sizes": [1, "2"]}, r"^sizes\[1\]: expected an integer"),
    ({"name": "x", "flag": "yes"}, r"^flag: expected true or false"),
    ({"name": "x", "inner": 3}, r"^inner: expected a mapping"),
])
def test_parse_errors_name_the_key(data, message):
    with pytest.raises(ValueError, match=message):
        parse(Outer, data)


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "flg": True}, r"^flg: unknown key; did you mean 'flag'\? \(known: flag, inner, mode, name, path, sizes\)$"),
    ({"name": "x", "inner": {"ration": 1.0}}, r"^inner\.ration: unknown key; did you mean 'inner\.ratio'\?"),
    ({"name": "x", "inner": {"zzz": 1}}, r"^inner\.zzz: unknown key; \(known: pair, ratio, size\)$"),  # nothing near: no guess
])
def test_a_typo_names_the_nearest_real_key(data, message):
    with pytest.raises(ValueError, match=message):
        parse(Outer, data)


def test_load_yaml(tmp_path):
    (tmp_path / "a.yaml").write_text("name: x\ninner: {size: 2}\n")
    assert parse(Outer, load_yaml(tmp_path / "a.yaml")).inner.size == 2
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml") == {}
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="mapping"):
        load_yaml(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ValueError, match="not valid YAML") as e:
        load_yaml(tmp_path / "bad.yaml")
    assert "\n" not in str(e.value)  # one line for the command line
    with pytest.raises(FileNotFoundError, match="config"):
        load_yaml(tmp_path / "missing.yaml")


def test_yaml_booleans_spelling_a_literal_choice_are_taken_as_it():
    """``mixed_precision: no`` in YAML (1.1) arrives as False: it means the choice "no"."""
    from hypir.train.config import RunConfig

    assert parse(RunConfig, {"mixed_precision": False}).mixed_precision == "no"
    with pytest.raises(ValueError, match="mixed_precision: expected one of"):
        parse(RunConfig, {"mixed_precision": True})  # no "yes"/"on"/"true" choice: still refused
    with pytest.raises(ValueError, match="mode: expected one of"):
        parse(Outer, {"name": "x", "mode": False})
