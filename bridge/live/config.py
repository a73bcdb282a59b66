"""The daemon's configuration: typed dataclasses loaded from TOML (configs/bridge.toml), CLI overrides.

Every table maps onto a dataclass; unknown keys and wrongly typed values are rejected with the dotted
key and the allowed names (UsageError -> exit 2). `--set a.b=value` overrides any key, the value
written as in TOML (`--set continuous.hop_s=0.1`, `--set output.osc.host="10.0.0.2"`); bare words are
taken as strings. The output sections reuse the sinks' own config dataclasses and validators, so a CC
collision or an unknown parameter name is reported the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from synthmatch.bridge.audio.input import InputSettings
from synthmatch.bridge.audio.notes import NoteSettings
from synthmatch.bridge.audio.onset import OnsetSettings
from synthmatch.bridge.core import tomlfile
from synthmatch.bridge.core.contract import CONFIG_DIR
from synthmatch.bridge.core.errors import UsageError
from synthmatch.bridge.core.loader import load_dataclass
from synthmatch.bridge.engines import BACKENDS

DEFAULT_CONFIG = CONFIG_DIR / "bridge.toml"
DEFAULT_MODEL = "models/default.onnx"  # relative paths: the working directory, else the repository root
MODES = ("trigger", "continuous", "manual")
BACKEND_CHOICES = ("auto", *BACKENDS)


@dataclass
class TriggerSettings:
    max_wait_s: float = 6.0  # wall time to wait for 4 s of audio after an onset, then zero-pad
    cut_at_next_onset: bool = True  # a new onset before the window is full ends it there (zero-padded)


@dataclass
class RefineSettings:
    passes: int = 0  # > 0: each trigger/manual snapshot is followed by a refined one, a
    #                                  few seconds later (bridge/live/refiner.py; needs the train extra)
    threads: int = 1  # torch threads of the refinement process


@dataclass
class ContinuousSettings:
    hop_s: float = 0.25  # a new 4 s window every hop
    smoothing_s: float = 0.3  # one-pole time constant per parameter; 0 = none
    deadband: float = 0.005  # a parameter moves only when it changed more than this (normalised)
    max_rate_hz: float = 20.0  # at most this many updates per second; 0 = unlimited
    gate_db: float = -55.0  # silence gate: no updates while the newest gate_s is below this (dBFS)
    gate_s: float = 0.5
    catch_up: bool = False  # process every hop even when late (files, benchmarks); else skip to newest


@dataclass
class ManualSettings:
    start: str = "onset"  # "onset": capture the next note after arming; "now": the last 4 s
    timeout_s: float = 30.0  # an armed capture that sees no onset in this time is dropped


@dataclass
class FootswitchSettings:
    enabled: bool = False
    port: str = ""  # MIDI input port name substring
    cc: int = 64  # controller that arms a capture (64 = sustain pedal)
    channel: int = 0  # 1..16; 0 = any
    api: str = "auto"  # auto | jack | alsa


@dataclass
class ControlSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9001
    footswitch: FootswitchSettings = field(default_factory=FootswitchSettings)


@dataclass
class LogSettings:
    interval_s: float = 10.0  # counters logged every this many seconds; 0 = only at exit
    status_line: bool = True  # one updating line on stderr when it is a terminal
    level: str = "info"


def _output_types():
    from synthmatch.bridge.outputs import sinks

    return sinks


@dataclass
class BridgeConfig:
    model: str = DEFAULT_MODEL
    backend: str = "auto"
    threads: int = 0  # ONNX Runtime intra-op threads; 0 = its default
    contract: str = ""  # contract TOML; "" = configs/contract.toml
    mode: str = "continuous"
    input: InputSettings = field(default_factory=InputSettings)
    onset: OnsetSettings = field(default_factory=OnsetSettings)
    trigger: TriggerSettings = field(default_factory=TriggerSettings)
    refine: RefineSettings = field(default_factory=RefineSettings)
    continuous: ContinuousSettings = field(default_factory=ContinuousSettings)
    manual: ManualSettings = field(default_factory=ManualSettings)
    notes: NoteSettings = field(default_factory=NoteSettings)
    output: Any = None  # OutputSettings (built from the sinks' dataclasses)
    control: ControlSettings = field(default_factory=ControlSettings)
    log: LogSettings = field(default_factory=LogSettings)
    source: str = "<defaults>"  # where this configuration came from (not a TOML key)


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise UsageError(f"--set {key}: {p} is not a table")
        node = nxt
    node[parts[-1]] = value


def parse_value(text: str) -> Any:
    """A --set value: TOML syntax (numbers, booleans, quoted strings, arrays), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# ------------------------------------------------------------------------------------------------


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None, contract=None) -> BridgeConfig:
    """Read the TOML (default configs/bridge.toml; a missing default is fine), apply dotted overrides,
    build and validate. Raises UsageError naming the key."""
    data: dict = {}
    source = "<defaults>"
    if path is not None or DEFAULT_CONFIG.exists():
        p = Path(path) if path is not None else DEFAULT_CONFIG
        data = tomlfile.read(p, UsageError, "config file not found; pass an existing file to --config")
        source = str(p)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    try:
        cfg = from_dict(data, contract=contract)
    except UsageError as e:
        raise UsageError(f"{source}: {e}") from None
    cfg.source = source
    return cfg


def from_dict(data: dict, contract=None) -> BridgeConfig:
    sinks = _output_types()
    data = dict(data)
    out_raw = data.pop("output", {})
    cfg = load_dataclass(BridgeConfig, data, "")
    if contract is None:
        from synthmatch.bridge.core import contract as contract_mod

        contract = contract_mod.load(resolve_path(cfg.contract) if cfg.contract else None)
    if not isinstance(out_raw, dict):
        raise UsageError("output: must be a table")
    out_raw = dict(out_raw)
    if isinstance(out_raw.get("midi"), dict) and "cc" in out_raw["midi"]:
        out_raw["midi"] = _cc_by_name(dict(out_raw["midi"]), contract)
    cfg.output = load_dataclass(sinks.OutputSettings, out_raw, "output")
    validate(cfg, contract)
    return cfg


def _cc_by_name(midi: dict, contract) -> dict:
    """[output.midi.cc] {name = number}: overrides of the contract's CC column by parameter name,
    turned into the sink's full `ccs` list."""
    table = midi.pop("cc")
    if not isinstance(table, dict):
        raise UsageError("output.midi.cc: must be a table {parameter_name = cc_number}")
    if midi.get("ccs"):
        raise UsageError("output.midi: give either ccs (a full list) or cc (overrides by name), not both")
    ccs = [p.cc for p in contract.params]
    for name, cc in table.items():
        if name not in contract.names:
            raise UsageError(f"output.midi.cc.{name}: unknown parameter; valid names: {', '.join(contract.names)}")
        if not isinstance(cc, int) or isinstance(cc, bool):
            raise UsageError(f"output.midi.cc.{name} = {cc!r}: a CC number is an integer 0..127")
        ccs[contract.names.index(name)] = cc
    midi["ccs"] = ccs
    return midi


def validate(cfg: BridgeConfig, contract=None) -> None:
    """Cross-field checks; the sinks validate their own sections against the contract."""
    if contract is None:
        from synthmatch.bridge.core import contract as contract_mod

        contract = contract_mod.load(resolve_path(cfg.contract) if cfg.contract else None)
    if cfg.mode not in MODES:
        raise UsageError(f"mode = {cfg.mode!r}: choose one of {', '.join(MODES)}")
    if cfg.backend not in BACKEND_CHOICES:
        raise UsageError(f"backend = {cfg.backend!r}: choose one of {', '.join(BACKEND_CHOICES)}")
    if cfg.threads < 0:
        raise UsageError(f"threads = {cfg.threads}: must be >= 0 (0 = default)")
    i = cfg.input
    if i.channel < 0:
        raise UsageError(f"input.channel = {i.channel}: 0 mixes all channels, N >= 1 picks one")
    if i.sample_rate < 0 or i.blocksize < 0:
        raise UsageError("input.sample_rate and input.blocksize must be >= 0 (0 = automatic)")
    if i.latency not in ("low", "high"):
        try:
            seconds = float(i.latency)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and 0 < seconds <= 10):
            raise UsageError(f'input.latency = {i.latency!r}: "low", "high" or seconds (0 < s <= 10)')
    cfg.onset.validate("onset")
    _in_range("trigger.max_wait_s", cfg.trigger.max_wait_s, 0, 3600, low_open=True)
    if cfg.refine.passes < 0 or cfg.refine.threads < 1:
        raise UsageError(
            f"refine.passes = {cfg.refine.passes}, refine.threads = {cfg.refine.threads}: "
            "passes >= 0 (0 = off), threads >= 1"
        )
    c = cfg.continuous
    _in_range("continuous.hop_s", c.hop_s, 0, 60, low_open=True)
    _in_range("continuous.smoothing_s", c.smoothing_s, 0, 60)
    _in_range("continuous.deadband", c.deadband, 0, 1, high_open=True, unit=" (normalised)")
    _in_range("continuous.max_rate_hz", c.max_rate_hz, 0, 1000, note="0 = unlimited")
    _in_range("continuous.gate_db", c.gate_db, -200, 0, unit=" dBFS")
    _in_range("continuous.gate_s", c.gate_s, 0, 60, low_open=True)
    if cfg.manual.start not in ("onset", "now"):
        raise UsageError(f'manual.start = {cfg.manual.start!r}: "onset" or "now"')
    _in_range("manual.timeout_s", cfg.manual.timeout_s, 0, 86400, low_open=True)
    try:
        cfg.notes.check("notes")
    except ValueError as e:
        raise UsageError(str(e)) from None
    ctl = cfg.control
    if not 0 <= ctl.port < 65536:
        raise UsageError(f"control.port = {ctl.port}: must be 1..65535 (0 = any free port)")
    fs = ctl.footswitch
    if not 0 <= fs.cc <= 127:
        raise UsageError(f"control.footswitch.cc = {fs.cc}: a MIDI CC is 0..127")
    if not 0 <= fs.channel <= 16:
        raise UsageError(f"control.footswitch.channel = {fs.channel}: 1..16, or 0 for any")
    _in_range("log.interval_s", cfg.log.interval_s, 0, 86400, note="0 = only at exit")
    if cfg.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise UsageError(f"log.level = {cfg.log.level!r}: debug, info, warning or error")
    _output_types().validate_outputs(cfg.output, contract)


def _in_range(
    key: str,
    v: float,
    lo: float,
    hi: float,
    low_open: bool = False,
    high_open: bool = False,
    unit: str = "",
    note: str = "",
) -> None:
    """Raise UsageError naming key unless lo <= v <= hi (< where open)."""
    ok = (v > lo if low_open else v >= lo) and (v < hi if high_open else v <= hi)
    if not ok:
        span = f"{'(' if low_open else '['}{lo:g}, {hi:g}{')' if high_open else ']'}"
        raise UsageError(f"{key} = {v:g}: must lie in {span}{unit}{'; ' + note if note else ''}")


def resolve_path(path: str) -> Path:
    """A relative path from the config: as given if it exists from here, else beside configs/ (the
    repository root in a checkout, the installed synthmatch package in a wheel: models/default.onnx)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    root = CONFIG_DIR.parent / p
    return root if root.exists() else p


def as_dict(cfg: BridgeConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d.pop("source", None)
    return d
