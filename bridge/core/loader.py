"""One typed loader: a TOML table (or any plain dict) into a dataclass, keys and types checked recursively.

    cfg = load_dataclass(BridgeConfig, tomllib.load(f), "")          # UsageError on the first problem
    spec = load_dataclass(Audio, raw["audio"], "audio", error=ContractError, source="contract.toml")

Unknown keys are refused with the allowed ones listed; a field without a default must be given; values are
checked against the annotation (bool is not an int, an int is a float, lists become tuples where the field
is a tuple, tuple[X, Y] takes exactly two items, nested dataclasses are loaded in turn); non-finite floats
are refused; the dataclass's own __post_init__ errors (TypeError, ValueError) are passed on in the same
form. Errors are one line, with the dotted key, of the class the caller names (default UsageError: exit 2
at the CLI).

A numeric field declares its range beside its default, and the loader refuses a value outside it (each
item of a list field is checked):

    holdoff_s: float = field(default=0.3, metadata=within(0, 60, unit=" s"))
    # onset.holdoff_s = 1e+308: must lie in [0, 60] s
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from synthmatch.bridge.core.errors import UsageError

T = TypeVar("T")

BOUNDS = "synthmatch.bounds"  # the field-metadata key `within` fills and the loader reads
INT32_MAX = 2**31 - 1  # the largest integer an OSC "i" argument (and most C APIs) carry


@dataclass(frozen=True)
class Bounds:
    """lo <= value <= hi (< where open); unit and note end the message ("0 = off")."""

    lo: float
    hi: float
    low_open: bool = False
    high_open: bool = False
    unit: str = ""
    note: str = ""

    def holds(self, v: float) -> bool:
        return (v > self.lo if self.low_open else v >= self.lo) and (v < self.hi if self.high_open else v <= self.hi)

    def message(self, key: str, v: Any) -> str:
        lo, hi = _bound(self.lo), _bound(self.hi)
        span = f"{'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"
        return f"{key} = {shown(v)}: must lie in {span}{self.unit}{'; ' + self.note if self.note else ''}"


def _bound(x: float) -> str:
    """A range end as written: 2147483647, not 2.14748e+09; 0.01 and 1e-06 as :g has them."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def within(
    lo: float, hi: float, *, low_open: bool = False, high_open: bool = False, unit: str = "", note: str = ""
) -> dict[str, Bounds]:
    """Field metadata declaring a numeric field's range: field(default=..., metadata=within(lo, hi))."""
    return {BOUNDS: Bounds(lo, hi, low_open, high_open, unit, note)}


def bounds_of(f: dataclasses.Field) -> Bounds | None:
    """The range a dataclass field declares with `within`, or None."""
    return f.metadata.get(BOUNDS)


def shown(v: Any) -> str:
    """A value as a message quotes it: floats with :g, anything long cut (a 50 MB value is not echoed)."""
    if isinstance(v, float):
        return f"{v:g}"
    try:
        text = repr(v)
    except ValueError:  # an int past Python's digit limit for str()
        return "(an integer too long to print)"
    return text if len(text) <= 40 else f"{text[:24]}... ({len(text)} characters)"


def load_dataclass(
    cls: type[T],
    raw: Any,
    where: str = "",
    error: type[Exception] = UsageError,
    source: str = "",
    hint: str = "",
) -> T:
    """cls from raw (a dict, or already a cls instance). where: the dotted table name for messages ("" for
    the top); source: prefixed to every message (a file name), when given; hint: appended to the messages
    about a missing table or key (e.g. "see configs/contract.toml")."""
    prefix = f"{source}: " if source else ""
    see = f" ({hint})" if hint else ""
    if isinstance(raw, cls):
        return raw
    if raw is None and where:
        raise error(f"{prefix}missing table [{where}]; add it{see}")
    if not isinstance(raw, dict):
        raise error(f"{prefix}{f'[{where}]' if where else 'config'} must be a table, not {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in known:
            allowed = ", ".join(sorted(known))
            raise error(f"{prefix}unknown key '{dotted}'; allowed keys{f' in [{where}]' if where else ''}: {allowed}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = load_dataclass(tp, value, dotted, error, source, hint)  # type: ignore[arg-type]
            continue
        ok, v = _convert(value, tp)
        if not ok:
            raise error(f"{prefix}{dotted} = {shown(value)}: expected {type_name(tp)}")
        if isinstance(v, float) and not math.isfinite(v):  # TOML and --set accept nan and inf
            raise error(f"{prefix}{dotted} = {shown(value)}: must be a finite number")
        b = bounds_of(known[key])
        if b is not None:
            for k, x in [(dotted, v)] if not isinstance(v, (list, tuple)) else _indexed(dotted, v):
                if not b.holds(x):
                    raise error(prefix + b.message(k, x))
        kwargs[key] = v
    missing = [n for n, f in known.items() if n not in raw and _required(f)]
    if missing:
        dotted = f"{where}.{missing[0]}" if where else missing[0]
        raise error(f"{prefix}missing key '{dotted}'; add it{see}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # the dataclass's own __post_init__ checks
        raise error(f"{prefix}{where + ': ' if where else ''}{e}") from None


def _indexed(key: str, items: list | tuple) -> list[tuple[str, Any]]:
    return [(f"{key}[{i}]", x) for i, x in enumerate(items)]


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _convert(value: Any, tp: Any) -> tuple[bool, Any]:
    """Is value acceptable for the annotation tp; returns (ok, value converted: int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _convert(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is Any:
        return True, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False, value
        try:
            return True, float(value)
        except OverflowError:  # an integer past the float range: refused as not finite
            return True, math.inf
    if tp is str:
        return isinstance(value, str), value
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        return _items(value, tp, origin)
    return True, value


def _items(value: list | tuple, tp: Any, origin: Any) -> tuple[bool, Any]:
    """Check the items of a list/tuple against list[X], tuple[X, ...] or tuple[X, Y] (exactly two items);
    bare list/tuple: any items."""
    args = typing.get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            return False, value
        per_item = list(args)
    else:
        per_item = [args[0] if args else Any] * len(value)
    out = []
    for x, item in zip(value, per_item):
        ok, v = _convert(x, item)
        if not ok:
            return False, value
        out.append(v)
    return True, tuple(out) if origin is tuple or tp is tuple else out


def type_name(tp: Any) -> str:
    """'float', 'str | none', 'tuple[float, ...]': an annotation as a user reads it."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if tp is type(None):
        return "none"
    name = getattr(typing.get_origin(tp) or tp, "__name__", str(tp))
    return f"{name}[{', '.join('...' if a is Ellipsis else type_name(a) for a in args)}]" if args else name
