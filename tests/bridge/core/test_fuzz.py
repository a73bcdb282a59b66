"""Fuzz (issue 22, item 8): the config loader and the model-metadata reader take any input and either load
it or raise the project's one-line error (UsageError, exit 2 at the CLI), never anything else. Bounded
in time: a fixed number of examples, each with a deadline."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from synthmatch.bridge.core import contract as contract_mod  # noqa: E402
from synthmatch.bridge.core import tomlfile  # noqa: E402
from synthmatch.bridge.core.errors import UsageError  # noqa: E402
from synthmatch.bridge.core.modelfile import ModelMeta, build_props, meta_from_proto  # noqa: E402
from synthmatch.bridge.live import config  # noqa: E402

C = contract_mod.default()
FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# values a TOML file, a --set or a JSON metadata entry can hold, with the awkward ones well represented
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, -(2**63), 10**20, 255, 65536]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1e-300, 0.0, -0.0]),
    st.text(max_size=40),
    st.sampled_from(["", "auto", "trigger", "ableton", "2", "x" * 5000, "\0", "\ufeff"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
toml_values = st.recursive(  # what TOML can carry: no None
    scalars.filter(lambda v: v is not None),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)


def _paths(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out.append(prefix + k)
        if isinstance(v, dict):
            out += _paths(v, prefix + k + ".")
    return out


DEFAULTS = tomlfile.read(config.DEFAULT_CONFIG, UsageError, "missing")
KEYS = _paths(DEFAULTS)


def _set(d: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        if not isinstance(d.get(p), dict):
            d[p] = {}
        d = d[p]
    d[last] = value


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(KEYS + ["nope", "output.nope.x", "input.nope"]), toml_values), max_size=4))
def test_config_loader_loads_or_raises_usage_error(changes):
    data = copy.deepcopy(DEFAULTS)
    for key, value in changes:
        _set(data, key, value)
    try:
        config.from_dict(data, contract=C)
    except UsageError as e:
        assert "\n" not in str(e)


@FUZZ
@given(st.text(max_size=300))
def test_toml_text_parses_or_raises_usage_error(text):
    try:
        assert isinstance(tomlfile.loads(text, UsageError, "fuzz.toml"), dict)
    except UsageError:
        pass


@FUZZ
@given(st.text(max_size=60))
def test_a_set_value_parses_or_raises_usage_error(text):
    try:
        config.parse_value(text)
    except UsageError:
        pass


GOOD = build_props(C, {"kind": "ast"}, {"step": 1}, "id")


def _proto(props: dict[str, str], inputs=("audio",), outputs=("params",)):
    entry = lambda k, v: SimpleNamespace(key=k, value=v)  # noqa: E731
    graph = SimpleNamespace(
        input=[SimpleNamespace(name=n) for n in inputs], output=[SimpleNamespace(name=n) for n in outputs]
    )
    return SimpleNamespace(metadata_props=[entry(k, v) for k, v in props.items()], graph=graph)


def _read(props: dict[str, str], **kw):
    try:
        meta = meta_from_proto(_proto(props, **kw), "fuzz.onnx")
    except UsageError as e:
        assert "\n" not in str(e) and len(str(e)) < 2000
        return None
    assert isinstance(meta, ModelMeta)
    assert isinstance(meta.sample_rate, int) and isinstance(meta.num_samples, int) and isinstance(meta.format, int)
    meta.reference_note  # noqa: B018 - read as the engines do
    return meta


def test_good_metadata_loads():
    assert _read(GOOD) is not None


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(k.split(".", 1)[1] for k in GOOD)), values, max_size=4))
def test_metadata_with_any_json_values_loads_or_raises_model_error(changed):
    props = {**GOOD, **{f"synthmatch.{k}": json.dumps(v) for k, v in changed.items()}}
    _read(props)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(sorted(GOOD)), st.text(max_size=50), max_size=3),
    st.sampled_from([("audio",), ("audio", "note"), ("x",), ()]),
)
def test_metadata_with_any_text_loads_or_raises_model_error(changed, inputs):
    _read({**GOOD, **changed}, inputs=inputs)


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("sample_rate", "null", "sample_rate = null: must be a whole number"),
        ("sample_rate", '"16000"', 'sample_rate = "16000": must be a whole number'),
        ("contract", "5", "contract = 5: must be a JSON object"),
        ("format", '"2"', 'format = "2": must be an integer'),
        ("summary", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_metadata_cases_of_the_probe_are_one_line(key, value, needle):
    with pytest.raises(UsageError, match=None) as e:
        meta_from_proto(_proto({**GOOD, f"synthmatch.{key}": value}), "m.onnx")
    assert needle in str(e.value) and "re-export" in str(e.value)
