"""core.loader.load_dataclass: every config dataclass (daemon, contract, sinks, synth profiles, models) is
loaded by it, so each way a table can be wrong is refused here with the dotted key, in the caller's class."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from synthmatch.bridge.core.errors import UsageError
from synthmatch.bridge.core.loader import INT32_MAX, load_dataclass, within


@dataclass
class Inner:
    gain: float = 1.0
    names: tuple[str, ...] = ()


@dataclass
class Outer:
    rate: int = 48000
    level: float = 0.5
    on: bool = False
    label: str | None = None
    pair: tuple[float, float] = (0.0, 1.0)
    ccs: list[int] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)


@dataclass(frozen=True)
class Needs:
    name: str
    banks: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")


class MyError(ValueError):
    pass


def test_defaults_and_a_full_table():
    assert load_dataclass(Outer, {}) == Outer()
    cfg = load_dataclass(
        Outer,
        {"rate": 44100, "level": 1, "on": True, "label": "x", "pair": [0, 0.5], "ccs": [1, 2], "inner": {"gain": 2}},
    )
    assert cfg == Outer(44100, 1.0, True, "x", (0.0, 0.5), [1, 2], Inner(2.0))
    assert load_dataclass(Outer, cfg) is cfg  # already loaded: passed through


def test_unknown_key_names_it_and_lists_the_allowed_ones():
    with pytest.raises(
        UsageError, match=r"^unknown key 'rat'; allowed keys: ccs, inner, label, level, on, pair, rate$"
    ):
        load_dataclass(Outer, {"rat": 1})
    with pytest.raises(UsageError, match=r"unknown key 'out.inner.gian'; allowed keys in \[out.inner\]: gain, names"):
        load_dataclass(Outer, {"inner": {"gian": 1.0}}, "out")


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"rate": "fast"}, "rate = 'fast': expected int"),
        ({"rate": 1.5}, "rate = 1.5: expected int"),
        ({"level": "loud"}, "level = 'loud': expected float"),
        ({"on": 1}, "on = 1: expected bool"),
        ({"label": 3}, "label = 3: expected str | none"),
        ({"ccs": [1, "2"]}, "ccs = [1, '2']: expected list[int]"),
        ({"ccs": 5}, "ccs = 5: expected list[int]"),
        ({"pair": [0.0, 0.5, 1.0]}, "pair = [0.0, 0.5, 1.0]: expected tuple[float, float]"),
        ({"pair": [0.0, "a"]}, "pair = [0.0, 'a']: expected tuple[float, float]"),
        ({"inner": {"names": ["a", 1]}}, "inner.names = ['a', 1]: expected tuple[str, ...]"),
    ],
)
def test_wrong_type_names_key_value_and_expected_type(raw, message):
    with pytest.raises(UsageError) as e:
        load_dataclass(Outer, raw)
    assert str(e.value) == message


def test_bool_is_not_an_int_nor_a_float():
    for key in ("rate", "level"):
        with pytest.raises(UsageError, match=f"{key} = True: expected"):
            load_dataclass(Outer, {key: True})
    with pytest.raises(UsageError, match=r"ccs = \[1, False\]"):
        load_dataclass(Outer, {"ccs": [1, False]})


def test_int_becomes_float_and_stays_int_where_int():
    cfg = load_dataclass(Outer, {"level": 2, "rate": 8000, "pair": [0, 1], "inner": {"gain": 3}})
    assert type(cfg.level) is float and type(cfg.rate) is int and type(cfg.inner.gain) is float
    assert all(type(x) is float for x in cfg.pair)


def test_lists_become_tuples_where_the_field_is_a_tuple_recursively():
    cfg = load_dataclass(Needs, {"name": "n", "banks": [["sine", "saw"], ["square"]]})
    assert cfg.banks == (("sine", "saw"), ("square",))
    hash(cfg)  # a frozen dataclass stays hashable
    assert load_dataclass(Outer, {"ccs": [1, 2]}).ccs == [1, 2]  # a list field stays a list


def test_nested_table_errors_carry_the_dotted_key():
    with pytest.raises(UsageError, match=r"^\[inner\] must be a table, not int$"):
        load_dataclass(Outer, {"inner": 3})
    with pytest.raises(UsageError, match=r"^x.inner.gain = 'a': expected float$"):
        load_dataclass(Outer, {"inner": {"gain": "a"}}, "x")
    with pytest.raises(UsageError, match=r"^config must be a table"):
        load_dataclass(Outer, [1])
    with pytest.raises(UsageError, match=r"^missing table \[audio\]; add it$"):
        load_dataclass(Outer, None, "audio")


def test_missing_required_key():
    with pytest.raises(UsageError, match=r"^missing key 'name'; add it$"):
        load_dataclass(Needs, {})
    with pytest.raises(UsageError, match=r"^f.toml: missing key 'row.name'; add it \(see the docs\)$"):
        load_dataclass(Needs, {"banks": []}, "row", source="f.toml", hint="see the docs")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(bad):
    with pytest.raises(UsageError, match=f"level = {bad}: must be a finite number"):
        load_dataclass(Outer, {"level": bad})
    with pytest.raises(UsageError, match="finite"):
        load_dataclass(Outer, {"inner": {"gain": bad}})


def test_the_callers_error_class_source_and_post_init_errors():
    with pytest.raises(MyError, match=r"^c.toml: unknown key 't.x'"):
        load_dataclass(Outer, {"x": 1}, "t", MyError, "c.toml")
    with pytest.raises(MyError, match=r"^c.toml: rate = 'a': expected int$"):
        load_dataclass(Outer, {"rate": "a"}, "", MyError, "c.toml")
    with pytest.raises(MyError, match=r"^c.toml: row: name must not be empty$"):  # __post_init__'s ValueError
        load_dataclass(Needs, {"name": ""}, "row", MyError, "c.toml")
    with pytest.raises(MyError, match=r"^name must not be empty$"):
        load_dataclass(Needs, {"name": ""}, error=MyError)
    with pytest.raises(MyError) as e:
        load_dataclass(Outer, {"x": 1}, error=MyError)
    assert not isinstance(e.value, UsageError)


# ---- declared ranges (issue 22): field(metadata=within(lo, hi)) ----------------------------------------


@dataclass
class Ranged:
    gain_db: float = field(default=0.0, metadata=within(-200, 0, unit=" dBFS"))
    passes: int = field(default=0, metadata=within(0, 10, note="0 = off"))
    hop_s: float = field(default=0.25, metadata=within(0, 60, low_open=True))
    share: float = field(default=0.5, metadata=within(0, 1, high_open=True))
    indices: list[int] = field(default_factory=list, metadata=within(0, INT32_MAX - 1))
    free: int = 0  # no range declared: any int


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"gain_db": 1e308}, "r.gain_db = 1e+308: must lie in [-200, 0] dBFS"),
        ({"gain_db": -201}, "r.gain_db = -201: must lie in [-200, 0] dBFS"),
        ({"passes": 99999999999999999999}, "r.passes = 99999999999999999999: must lie in [0, 10]; 0 = off"),
        ({"passes": -1}, "r.passes = -1: must lie in [0, 10]; 0 = off"),
        ({"hop_s": 0}, "r.hop_s = 0: must lie in (0, 60]"),
        ({"share": 1}, "r.share = 1: must lie in [0, 1)"),
        ({"indices": [0, 2**31]}, "r.indices[1] = 2147483648: must lie in [0, 2147483646]"),
        ({"hop_s": 10**400}, "must be a finite number"),  # an int past the float range: no OverflowError
    ],
)
def test_declared_ranges_refuse_naming_the_key_and_the_range(raw, message):
    with pytest.raises(MyError) as e:
        load_dataclass(Ranged, raw, "r", MyError)
    assert str(e.value).startswith(message) or message in str(e.value), str(e.value)


def test_declared_ranges_accept_their_edges_and_a_huge_value_is_not_echoed_whole():
    cfg = load_dataclass(
        Ranged, {"gain_db": -200, "passes": 10, "hop_s": 60, "share": 0, "indices": [0, 5], "free": -9}
    )
    assert (cfg.gain_db, cfg.passes, cfg.indices, cfg.free) == (-200.0, 10, [0, 5], -9)
    with pytest.raises(UsageError) as e:
        load_dataclass(Ranged, {"passes": 10**3000})
    assert len(str(e.value)) < 120 and "(3001 characters)" in str(e.value), str(e.value)
