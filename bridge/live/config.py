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
import os
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
from synthmatch.bridge.core.loader import load_dataclass, within
from synthmatch.bridge.engines import BACKENDS

DEFAULT_CONFIG = CONFIG_DIR / "bridge.toml"
DEFAULT_MODEL = "models/default.onnx"  # relative paths: the working directory, else the repository root
DEFAULT_PERF_MODEL = "models/performance.onnx"  # continuous mode's performance model (follow = "held")
MODES = ("trigger", "continuous", "manual")
FOLLOW = ("held", "window")  # continuous.follow
BACKEND_CHOICES = ("auto", *BACKENDS)
# threads beyond 4 per core only contend (threads=1000 measured 2.4 s per inference on 2 cores)
MAX_THREADS = (os.cpu_count() or 1) * 4


@dataclass
class TriggerSettings:
    max_wait_s: float = field(default=6.0, metadata=within(0, 3600, low_open=True, unit=" s"))
    # wall time to wait for 4 s of audio after an onset, then zero-pad
    cut_at_next_onset: bool = True  # a new onset before the window is full ends it there (zero-padded)


@dataclass
class RefineSettings:
    # every answer judged by synthesis and improved within this budget (bridge/match/search.py), ms; in
    # continuous mode at most the hop's share (daemon.HOP_SHARE). 0 = the network's answer alone.
    # 150 ms: scripts/bench_match.py (the README's table)
    budget_ms: float = field(default=150.0, metadata=within(0, 5000, unit=" ms", note="0 = the network alone"))
    # trigger/manual: send the network's answer at once as a preview, the refined one after it
    network_first: bool = False
    # continuous: the answer playing is kept unless another is closer by this fraction (no chatter)
    keep_margin: float = field(default=0.05, metadata=within(0, 1, high_open=True))


@dataclass
class ContinuousSettings:
    # "held" (performance mode): each hop the held matcher (bridge/match/held.py) judges the steady
    # spectrum of the newest 0.2 s; "window": the network (and refine's matcher) on a sliding 4 s window
    follow: str = "held"
    # a new answer every hop (10 ms at least). Held: 50 ms (the example; at 8 ms a hop it measured
    # 33 % of a core on scripts/bench_performance.py; other hops not measured yet)
    hop_s: float = field(default=0.05, metadata=within(0.01, 60, unit=" s"))
    # one-pole time constant per parameter; 0 = none (held: the matcher's keep_margin is the stability;
    # smoothing would only add lag to a crossing)
    smoothing_s: float = field(default=0.0, metadata=within(0, 60, unit=" s"))
    # a parameter moves only when it changed more than this (normalised)
    deadband: float = field(default=0.005, metadata=within(0, 1, high_open=True, unit=" (normalised)"))
    # at most this many updates per second; 0 = unlimited (held: on the stream's clock)
    max_rate_hz: float = field(default=30.0, metadata=within(0, 1000, note="0 = unlimited"))
    # silence gate: no updates while the newest gate_s is below this (dBFS)
    gate_db: float = field(default=-55.0, metadata=within(-200, 0, unit=" dBFS"))
    # the gate's span: 10 ms at least (shorter measured nothing and gated every window), the window at most.
    # 0.3 s: a note's first update comes as soon as this much of it is loud enough
    gate_s: float = field(default=0.3, metadata=within(0.01, 4, unit=" s"))
    # held: the held matcher's time per hop (at most 60 % of the hop less an inference); 8 ms at a 50 ms hop
    # measured 33 % of a core in real time (the benchmark's cpu_share, on a loaded 2-core machine)
    budget_ms: float = field(default=8.0, metadata=within(0, 1000, unit=" ms"))
    # held: the answer playing is kept unless another is closer by this fraction (the stability; 0.05 moved
    # on most hops while the search converged, 0.3 held the old answer a second after a switch)
    keep_margin: float = field(default=0.15, metadata=within(0, 1, high_open=True))
    # held: the network's 4 s answer seeds the matcher on a new note and then every this many seconds
    # (0 = on new notes only); with a performance model (below), on new notes only
    network_every_s: float = field(default=0.5, metadata=within(0, 60, unit=" s"))
    # held: the performance model (issue 19; a short window of the held note, told the note) seeds the
    # held matcher every hop once the note has filled its window: the oscillators and filters it carries,
    # the rest from the answer playing. "" = none (the full network's seeds alone)
    model: str = DEFAULT_PERF_MODEL
    catch_up: bool = False  # process every hop even when late (files, benchmarks); else skip to newest


@dataclass
class ManualSettings:
    start: str = "onset"  # "onset": capture the next note after arming; "now": the last 4 s
    # an armed capture that sees no onset in this time is dropped
    timeout_s: float = field(default=30.0, metadata=within(0, 86400, low_open=True, unit=" s"))


@dataclass
class FootswitchSettings:
    enabled: bool = False
    port: str = ""  # MIDI input port name substring
    cc: int = field(default=64, metadata=within(0, 127, note="a MIDI CC"))  # arms a capture (64 = sustain)
    channel: int = field(default=0, metadata=within(0, 16, note="1..16, or 0 for any"))
    api: str = "auto"  # auto | jack | alsa


@dataclass
class ControlSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=9001, metadata=within(0, 65535, note="0 = any free port"))
    footswitch: FootswitchSettings = field(default_factory=FootswitchSettings)


@dataclass
class LogSettings:
    # counters logged every this many seconds; 0 = only at exit
    interval_s: float = field(default=10.0, metadata=within(0, 86400, unit=" s", note="0 = only at exit"))
    status_line: bool = True  # one updating line on stderr when it is a terminal
    level: str = "info"


def _output_types():
    from synthmatch.bridge.outputs import config

    return config


@dataclass
class BridgeConfig:
    model: str = DEFAULT_MODEL
    backend: str = "auto"
    # ONNX Runtime intra-op threads; 0 = its default
    threads: int = field(default=0, metadata=within(0, MAX_THREADS, note="0 = default, at most 4 per core"))
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


def load(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    contract=None,
    origins: dict[str, str] | None = None,
) -> BridgeConfig:
    """Read the TOML (default configs/bridge.toml; a missing default is fine), apply dotted overrides,
    build and validate. Raises UsageError naming the key, and where it was written: the file, or the
    flag an override came from (origins: key -> "--set KEY=VALUE", "--midi-port NAME", ...; default
    "--set KEY")."""
    data: dict = {}
    source = "<defaults>"
    if path is not None or DEFAULT_CONFIG.exists():
        p = Path(path) if path is not None else DEFAULT_CONFIG
        data = tomlfile.read(p, UsageError, "config file not found; pass an existing file to --config")
        source = str(p)
    for key, value in (overrides or {}).items():
        try:
            _set_dotted(data, key, value)
        except UsageError as e:
            raise UsageError(f"{(origins or {}).get(key, f'--set {key}')}: {e}") from None
    try:
        cfg = from_dict(data, contract=contract)
    except UsageError as e:
        raise UsageError(f"{_blame(str(e), overrides or {}, origins or {}, source)}: {e}") from None
    cfg.source = source
    return cfg


def _blame(message: str, overrides: dict[str, Any], origins: dict[str, str], source: str) -> str:
    """Where the key a message names was written: the flag of the override it comes from (the longest
    override key the message names, e.g. output.midi.cc.filter1_cutoff), else the file."""
    import re

    named = set(re.findall(r"[A-Za-z_][\w.]*(?:\[\d+\])?", message))
    hits = [k for k in overrides if any(n == k or n.startswith(k + ".") or n.startswith(k + "[") for n in named)]
    if not hits:
        return source
    key = max(hits, key=len)
    return origins.get(key, f"--set {key}")


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
        if not isinstance(cc, int) or isinstance(cc, bool) or not -1 <= cc <= 127:
            raise UsageError(f"output.midi.cc.{name} = {cc!r}: a CC number is an integer 0..127 (-1 = not sent)")
        ccs[contract.names.index(name)] = cc
    wide = midi.get("resolution") == 14
    for name, cc in table.items():  # a collision is reported by the key written, not as ccs[i]
        if cc < 0:
            continue
        mine = {cc, cc + 32} if wide else {cc}
        for other, occ in zip(contract.names, ccs):
            if other == name or occ < 0:
                continue
            theirs = {occ, occ + 32} if wide else {occ}
            if mine & theirs:
                clash = min(mine & theirs)
                how = f"output.midi.cc.{other}" if other in table else "the contract's cc column"
                lsb = f" on 14-bit LSB {clash} (a pair uses CC n and n + 32)" if cc != occ else ""
                raise UsageError(
                    f"output.midi.cc.{name} = {cc} collides with {other} (CC {occ}, {how}){lsb}; pick a free CC, "
                    f"or move {other} too (output.midi.cc.{other} = N, or -1 to send it nowhere)"
                )
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
    i = cfg.input
    if i.latency not in ("low", "high"):
        try:
            seconds = float(i.latency)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and 0 < seconds <= 10):
            raise UsageError(f'input.latency = {i.latency!r}: "low", "high" or seconds (0 < s <= 10)')
    cfg.onset.validate("onset")
    if cfg.continuous.follow not in FOLLOW:
        raise UsageError(f'continuous.follow = {cfg.continuous.follow!r}: "held" (performance mode) or "window"')
    if cfg.manual.start not in ("onset", "now"):
        raise UsageError(f'manual.start = {cfg.manual.start!r}: "onset" or "now"')
    try:
        cfg.notes.check("notes")
    except ValueError as e:
        raise UsageError(str(e)) from None
    if cfg.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise UsageError(f"log.level = {cfg.log.level!r}: debug, info, warning or error")
    _output_types().validate_outputs(cfg.output, contract)


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
