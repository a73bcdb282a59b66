"""VST3 instruments through pedalboard, on the real test plugins (scripts/build_test_plugin.sh builds
them; scripts/setup.sh --dev runs it): parameters, what each mapped parameter does to the sound,
determinism, bad plugins, and sharded datasets rendered through the plugin (worker counts, crashes,
--shards)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synthmatch.bridge import cli
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.data import shardrender as shards_mod
from synthmatch.training.data.shardrender import render_dataset
from synthmatch.training.data.shards import MANIFEST, ShardDataset, ShardError, holdout
from synthmatch.training.synths import SynthError, SynthSpec, parse_spec
from synthmatch.training.synths import profile as profile_mod
from synthmatch.training.synths.sampling import sample_params
from synthmatch.training.synths.vst3 import Vst3Synth, load_plugin

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "build" / "plugins"
SMTEST = PLUGINS / "SMTest.vst3"
PROFILE = ROOT / "configs" / "synths" / "smtest.toml"

pytestmark = pytest.mark.skipif(not SMTEST.exists(), reason="test plugin not built: run scripts/build_test_plugin.sh")


@pytest.fixture(scope="module")
def c():
    return contract_mod.default()


@pytest.fixture(scope="module")
def synth(c):
    return Vst3Synth(SMTEST, c, "smtest")


def _profile_file(tmp_path: Path, plugin: str = "SMTest", **fixed) -> Path:
    """The smtest profile for another build of the plugin, with some [fixed] values changed."""
    text = PROFILE.read_text().replace('plugin = "SMTest"', f'plugin = "{plugin}"')
    text += "init_timeout_s = 0.5\n"  # [render] is last; a silent plugin would otherwise hold the load 10 s
    for name, value in fixed.items():
        text = "\n".join(f"{name} = {value}" if line.startswith(f"{name} =") else line for line in text.splitlines())
    p = tmp_path / f"{plugin}-{len(fixed)}.toml"
    p.write_text(text)
    return p


def _patch(c, **values) -> np.ndarray:
    """The mean patch of the smtest sampling with some contract parameters set (normalised)."""
    v = np.full(16, 0.5, np.float32)
    for k, x in values.items():
        v[c.names.index(k)] = x
    return v


def _centroid(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float((f * spec).sum() / spec.sum())


def test_parameters_names_and_ranges():
    plugin = load_plugin(SMTEST)
    assert plugin.is_instrument and plugin.name == "SMTest"
    params = {p.name: p for p in plugin._parameters}
    expected = {
        "Shape": ("0.0", "1.0"),
        "Tune": ("-24.0", "24.0"),
        "Cutoff": ("20.0", "20000.0"),
        "Resonance": ("0.0", "1.0"),
        "Attack": ("0.001", "4.0"),
        "Decay": ("0.01", "5.0"),
        "Sustain": ("0.0", "1.0"),
        "Release": ("0.001", "4.0"),
        "Gain": ("0.0", "1.0"),
    }
    for name, (lo, hi) in expected.items():
        p = params[name]
        assert p.is_automatable
        assert float(p.get_text_for_raw_value(0.0)) == pytest.approx(float(lo))
        assert float(p.get_text_for_raw_value(1.0)) == pytest.approx(float(hi))
    assert params["Cutoff"].label == "Hz" and params["Attack"].label == "s"
    # the first parameter reads back what was set (DPF's VST3 wrapper needed a fix for it, see the build script)
    params["Shape"].raw_value = 0.25
    assert params["Shape"].raw_value == pytest.approx(0.25)


def test_profile_maps_contract_values_onto_the_plugin(c, synth):
    cut = next(m for m in synth.profile.maps if m.param == "filter1_cutoff")
    for v in (0.0, 0.5, 1.0):  # contract Hz (log 60 .. 8000) lands on the plugin's linear 20 .. 20000 Hz
        hz = float(synth.plugin._parameters[synth._maps[3][1]].get_text_for_raw_value(cut.to_raw(v, c)))
        assert hz == pytest.approx(c.param("filter1_cutoff").to_physical(v), rel=2e-3)
    pinned = dict(synth.profile.unmapped)
    samples = synth.sampling.samples
    for i, name in enumerate(c.names):  # unmapped contract parameters are sampled as fixed values
        if name in pinned:
            assert samples[i] == {"dist": "fixed", "value": pinned[name]}
        else:
            assert samples[i]["dist"] == "uniform"


def test_each_mapped_parameter_changes_the_sound_as_named(c, synth):
    sr = c.audio.sample_rate
    r = lambda **kw: synth.render(_patch(c, **kw)[None])[0]  # noqa: E731
    held = slice(int(0.5 * sr), int(2.5 * sr))  # while the note is held
    lo, hi = r(filter1_cutoff=0.2), r(filter1_cutoff=0.8)
    assert _centroid(hi[held], sr) > 2 * _centroid(lo[held], sr)  # cutoff moves the spectral centroid
    fast, slow = r(env_attack=0.0), r(env_attack=0.9)
    assert np.argmax(np.abs(slow)) > np.argmax(np.abs(fast)) + int(0.3 * sr)  # attack delays the peak
    short, long = r(env_decay=0.0, env_attack=0.0), r(env_decay=1.0, env_attack=0.0)
    win = slice(int(0.2 * sr), int(0.6 * sr))
    assert np.sqrt(np.mean(long[win] ** 2)) > 1.3 * np.sqrt(np.mean(short[win] ** 2))  # decay: level holds longer
    quiet, loud = r(osc1_gain=0.25), r(osc1_gain=1.0)
    assert np.abs(loud).max() == pytest.approx(4 * np.abs(quiet).max(), rel=1e-3)  # gain is linear amplitude
    sine, square = r(osc1_position=0.0, filter1_cutoff=1.0), r(osc1_position=1.0, filter1_cutoff=1.0)
    assert _centroid(square[held], sr) > 1.6 * _centroid(sine[held], sr)  # shape: sine -> square adds harmonics
    f = np.fft.rfftfreq(held.stop - held.start, 1 / sr)
    for v, semis in ((0.5, 0), (0.75, 12)):  # tune: the sine's pitch, at the contract's rate after resampling
        x = r(osc1_position=0.0, osc1_pitch=v, filter1_cutoff=1.0)[held]
        assert f[np.argmax(np.abs(np.fft.rfft(x)))] == pytest.approx(261.63 * 2 ** (semis / 12), abs=1.0)
    dull, ringing = r(filter1_resonance=0.0, filter1_cutoff=0.5), r(filter1_resonance=1.0, filter1_cutoff=0.5)
    fc = c.param("filter1_cutoff").to_physical(0.5)
    band = (f > 0.8 * fc) & (f < 1.25 * fc)
    gain_at_fc = lambda x: np.abs(np.fft.rfft(x[held]))[band].sum()  # noqa: E731
    assert gain_at_fc(ringing) > 3 * gain_at_fc(dull)  # resonance lifts the band around the cutoff


def test_render_depends_only_on_its_patch(c, tmp_path):
    # a 4 s release keeps the voice sounding past the render's end: only a reset makes renders independent
    s = Vst3Synth(SMTEST, c, _profile_file(tmp_path, Release=1.0))
    a, b = _patch(c, filter1_cutoff=0.3), _patch(c, filter1_cutoff=0.9, osc1_position=1.0)
    first = s.render(np.stack([a, b, a]))
    assert np.abs(first[0, -1000:]).max() > 1e-3  # still sounding at the end
    assert first.shape == (3, c.audio.num_samples) and first.dtype == np.float32
    assert np.array_equal(first[0], first[2]) and not np.array_equal(first[0], first[1])
    fresh = Vst3Synth(SMTEST, c, _profile_file(tmp_path, Release=1.0))
    assert np.array_equal(fresh.render(a[None])[0], first[0])


def test_reset_in_place_only_where_the_plugin_clears_its_sound(c, synth, tmp_path):
    a, b = _patch(c, filter1_cutoff=0.3), _patch(c, filter1_cutoff=0.9, osc1_position=1.0, env_attack=1.0)
    first = synth.render(np.stack([a, b, a]))
    assert synth.reset_mode == "clear" and np.array_equal(first[0], first[2])
    text = PROFILE.read_text() + 'reset = "reinstantiate"\n'  # [render] is last
    (tmp_path / "fresh.toml").write_text(text)
    fresh = Vst3Synth(SMTEST, c, tmp_path / "fresh.toml")
    assert np.array_equal(fresh.render(np.stack([a, b, a])), first)  # a fresh instance per render: same audio
    assert fresh.reset_mode == "reinstantiate" and fresh.identity == synth.identity
    # a plugin whose reset keeps its voice sounding fails the check and is re-created for every render
    sticky = Vst3Synth(PLUGINS / "SMTestSticky.vst3", c, _profile_file(tmp_path, "SMTestSticky"))
    again = sticky.render(np.stack([a, b, a]))
    assert sticky.reset_mode == "reinstantiate" and np.array_equal(again[0], again[2])


def test_bad_plugins_give_clear_errors(c, tmp_path):
    with pytest.raises(SynthError, match="no such plugin"):
        Vst3Synth(tmp_path / "Missing.vst3", c, "smtest")
    junk = tmp_path / "Junk.vst3"
    junk.write_bytes(b"not a plugin at all\n" * 100)
    with pytest.raises(SynthError, match="pedalboard cannot load it"):
        Vst3Synth(junk, c, "smtest")
    with pytest.raises(SynthError, match="is an effect"):
        Vst3Synth(PLUGINS / "SMTestFx.vst3", c, _profile_file(tmp_path, "SMTestFx"))
    with pytest.raises(SynthError, match="renders silence"):
        Vst3Synth(PLUGINS / "SMTestSilent.vst3", c, _profile_file(tmp_path, "SMTestSilent"))
    with pytest.raises(SynthError, match="profile .* is for 'Massive'"):
        Vst3Synth(SMTEST, c, "massive")
    typo = tmp_path / "typo.toml"
    typo.write_text(PROFILE.read_text().replace('plugin = "Cutoff"', 'plugin = "cut off"'))
    with pytest.raises(SynthError, match=r"no parameter named 'cut off' \(closest: 'Cutoff'"):
        Vst3Synth(SMTEST, c, typo)


def test_profile_loader_rejects_bad_profiles(c, tmp_path):
    base = PROFILE.read_text()
    cases = {
        "unknown key 'colour'": 'colour = "red"\n' + base,
        "unknown key 'param\\[0\\].curve'": base.replace('map = "physical"\nplugin_min = -24.0', 'curve = "log"', 1),
        "reverb_mix neither mapped nor pinned": base.replace("reverb_mix = 0.0\n", ""),
        "both mapped .* and in \\[unmapped\\]": base.replace("reverb_mix = 0.0", "reverb_mix = 0.0\nosc1_gain = 1.0"),
        "expected a raw host value": base.replace("Sustain = 0.35", "Sustain = 2"),
    }
    for message, text in cases.items():
        p = tmp_path / "bad.toml"
        p.write_text(text)
        with pytest.raises(profile_mod.ProfileError, match=message):
            profile_mod.load(p, c)
    with pytest.raises(SynthError, match="needs --profile"):
        parse_spec(f"vst3:{SMTEST}")
    with pytest.raises(SynthError, match="unknown synth"):
        parse_spec("lv2:/x")


def test_cli_errors_exit_2_without_traceback(tmp_path, capsys):
    rc = cli.main(
        [
            "dataset",
            "render",
            "--synth",
            f"vst3:{PLUGINS / 'SMTestFx.vst3'}",
            "--profile",
            str(_profile_file(tmp_path, "SMTestFx")),
            "--count",
            "4",
            "--out",
            str(tmp_path / "d"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "is an effect" in err and "Traceback" not in err
    rc = cli.main(
        [
            "dataset",
            "render",
            "--synth",
            f"vst3:{SMTEST}",
            "--profile",
            "smtest",
            "--count",
            "4",
            "--shard-size",
            "2",
            "--shards",
            "1:5",
            "--out",
            str(tmp_path / "e"),
        ]
    )
    assert rc == 2 and "give A:B with 0 <= A < B <= 2" in capsys.readouterr().err


def _render(c, out: Path, workers: int, plugin: Path = SMTEST, profile="smtest", **kw) -> dict:
    spec = SynthSpec("vst3", str(plugin), str(profile))
    return render_dataset(
        c, out, 6, seed=3, workers=workers, shard_size=2, store="audio", progress=False, synth=spec, **kw
    )


def _shards(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.glob("shard-*"))}


@pytest.fixture(scope="module")
def one_worker(c, tmp_path_factory):
    out = tmp_path_factory.mktemp("vst3-w1")
    _render(c, out, workers=1)
    return out


def test_dataset_through_the_plugin_is_the_seams_audio(c, synth, one_worker):
    manifest = json.loads((one_worker / MANIFEST).read_text())
    assert manifest["synth"] == synth.identity and manifest["synth"].startswith("vst3:SMTest 1.0.0")
    ds = ShardDataset(one_worker, c, verify=True)
    x, p = ds.batch(range(6))
    direct = synth.render(p.numpy())
    assert np.abs(x.numpy() - direct).max() <= 0.5 / 32767 + 1e-7  # int16 of the seam's render
    assert np.all(p.numpy()[:, c.names.index("reverb_mix")] == 0.0)  # pinned by the profile


def test_same_bytes_with_two_workers(c, one_worker, tmp_path):
    _render(c, tmp_path, workers=2)
    assert _shards(tmp_path) == _shards(one_worker)


def test_crashing_worker_is_restarted_and_its_shard_redone(c, one_worker, tmp_path, monkeypatch):
    flag = tmp_path / "crash-once"
    content = {"text": "once"}
    monkeypatch.setenv("SMTEST_CRASH_ONCE", str(flag))
    real_pool = shards_mod._render_pool

    def arm_then_render(*args):  # the parent's own check of the plugin must not crash: arm after it
        if content["text"] and not flag.exists():
            flag.write_text(content["text"])
            content["text"] = content["text"] if content["text"] == "always" else ""
        return real_pool(*args)

    monkeypatch.setattr(shards_mod, "_render_pool", arm_then_render)
    crash = PLUGINS / "SMTestCrash.vst3"
    summary = _render(c, tmp_path / "d", workers=1, plugin=crash, profile=_profile_file(tmp_path, "SMTestCrash"))
    assert summary["restarts"] == 1 and not flag.exists()  # the plugin crashed once, inside a worker
    assert _shards(tmp_path / "d") == _shards(one_worker)  # nothing lost, nothing half-written kept
    assert not list((tmp_path / "d").glob("*.tmp-*"))
    content["text"] = "always"  # a plugin that dies on every patch: reported, not retried forever
    with pytest.raises(ShardError, match="died 3 times on shard\\(s\\) 00000"):
        _render(c, tmp_path / "e", workers=1, plugin=crash, profile=_profile_file(tmp_path, "SMTestCrash"))
    assert not list((tmp_path / "e").glob("*.tmp-*"))
    with pytest.raises(ShardError, match="unfinished dataset"):
        ShardDataset(tmp_path / "e", c)


def test_shard_ranges_split_one_dataset(c, one_worker, tmp_path):
    s = _render(c, tmp_path, workers=1, shards=(1, 3))
    assert s["range"] == [1, 3] and s["rendered_shards"] == 2
    with pytest.raises(ShardError, match="unfinished dataset"):
        ShardDataset(tmp_path, c)
    _render(c, tmp_path, workers=1, shards=(0, 1))
    assert _shards(tmp_path) == _shards(one_worker)
    assert len(ShardDataset(tmp_path, c, verify=True)) == 6


# ------------------------------------------------------------------------------------------------
# End to end: shards through the plugin -> train -> export -> match through the plugin

TINY = '{ base = "ast-tiny", depth = 1, dim = 32, heads = 2, head_hidden = 32 }'


@pytest.fixture(scope="module")
def plugin_model(c, tmp_path_factory):
    """A 4-step model trained on 24 examples rendered through the test instrument, exported."""
    d = tmp_path_factory.mktemp("vst3-e2e")
    rc = cli.main(
        [
            "dataset",
            "render",
            "--synth",
            f"vst3:{SMTEST}",
            "--profile",
            "smtest",
            "--count",
            "24",
            "--shard-size",
            "12",
            "--store",
            "audio",
            "--out",
            str(d / "data"),
        ]
    )
    assert rc == 0
    (d / "train.toml").write_text(
        f'model = {TINY}\ndata = "{d / "data"}"\nsteps = 4\nbatch_size = 4\n'
        f"warmup_steps = 1\nval_size = 4\nval_batch_size = 4\nval_every = 0\n"
        f'plot = false\ncache_dir = "{d / "cache"}"\n'
    )
    assert cli.main(["train", "--config", str(d / "train.toml"), "--out", str(d / "run"), "--device", "cpu"]) == 0
    assert cli.main(["export", "--checkpoint", str(d / "run" / "last.pt"), "--out", str(d / "model.onnx")]) == 0
    return d


def test_model_trained_on_plugin_shards_carries_the_plugins_identity(c, synth, plugin_model):
    from synthmatch.bridge.core.modelfile import read_meta
    from synthmatch.training.match import DEFAULT_MODEL
    from synthmatch.training.model.checkpoint import checkpoint_synth, load_checkpoint

    assert json.loads((plugin_model / "data" / MANIFEST).read_text())["synth"] == synth.identity
    assert checkpoint_synth(load_checkpoint(plugin_model / "run" / "last.pt")) == synth.identity
    assert read_meta(plugin_model / "model.onnx").synth == synth.identity
    assert str(SMTEST) not in synth.identity and "profile=smtest@" in synth.identity  # no machine's path in it
    assert read_meta(DEFAULT_MODEL).synth == "reference"  # a file exported before the key existed


def test_match_through_the_plugin_and_refusals(c, synth, plugin_model, tmp_path, capsys):
    from synthmatch.bridge.core import audiofile

    target = sample_params(c, 5, range(1), synth.sampling)
    audiofile.write(tmp_path / "target.wav", synth.render(target)[0], c.audio.sample_rate)
    model = str(plugin_model / "model.onnx")
    rc = cli.main(
        [
            "match",
            str(tmp_path / "target.wav"),
            "--model",
            model,
            "--synth",
            f"vst3:{SMTEST}",
            "--profile",
            "smtest",
            "--out-dir",
            str(tmp_path / "m"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "m" / "params.json").read_text())
    assert report["synth"] == synth.identity
    r = report["refinement"]  # one pass by default through a plugin, over its 7 mapped parameters only
    assert r["passes"] == 1 and r["renders"] == 206 and r["distance_refined"] <= r["distance_model"]
    for name, pin in synth.profile.unmapped:  # pinned parameters are reported at their pins
        assert report["values"][name] == pytest.approx(pin)
    wav = audiofile.read_mono(tmp_path / "m" / "match.wav", c.audio.sample_rate)
    values = np.array([report["values"][n] for n in c.names], np.float32)
    assert np.abs(wav - synth.render(values[None])[0]).max() < 0.05  # the plugin playing the match (values rounded)
    capsys.readouterr()
    rc = cli.main(["match", str(tmp_path / "target.wav"), "--model", model, "--out-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"trained on synth {synth.identity!r}, not on 'reference'" in err
    rc = cli.main(
        [
            "match",
            str(tmp_path / "target.wav"),
            "--synth",
            f"vst3:{SMTEST}",
            "--profile",
            "smtest",
            "--out-dir",
            str(tmp_path / "s"),
        ]
    )  # the shipped reference model, for the plugin
    err = capsys.readouterr().err
    assert rc == 2 and f"trained on synth 'reference', not on {synth.identity!r}" in err


def test_a_plugin_dataset_holds_out_its_last_examples_for_validation(c, one_worker, tmp_path):
    ds = ShardDataset(one_worker, c)
    n, rows = holdout(ds, 2)
    assert n == 4 and rows.tolist() == [4, 5]
    n, rows = holdout(ds, 2, data_size=3)
    assert n == 3 and rows.tolist() == [4, 5]  # the same validation rows whatever data_size
    assert holdout(ds, 2, data_size=50)[0] == 4  # never into the held-out tail
    with pytest.raises(ShardError, match="val_size = 6 holds out every one of its 6 examples"):
        holdout(ds, 6)
    render_dataset(c, tmp_path, 4, shard_size=4, store="audio", progress=False)
    assert holdout(ShardDataset(tmp_path, c), 2) is None  # reference data validates on the reference val split


def test_probe_describes_the_plugin_through_its_profile(synth, capsys):
    assert cli.main(["dataset", "probe", "--synth", f"vst3:{SMTEST}", "--profile", "smtest"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["identity"] == synth.identity and out["reset"] == "clear"
    cutoff = next(m for m in out["mapped"] if m["plugin"] == "Cutoff")
    assert cutoff["label"] == "Hz" and float(cutoff["text_at"]["0.0"]) == pytest.approx(60.0, rel=2e-3)
    assert [f["plugin"] for f in out["fixed"]] == ["Sustain", "Release"]
    assert "Sustain" not in out["other_parameters"] and out["mean_patch"]["peak"] > 0.01


def test_training_on_plugin_shards_validates_on_their_tail_and_refuses_another_synths(
    c, synth, plugin_model, tmp_path, capsys
):
    import shutil

    from synthmatch.training.model.checkpoint import load_model

    ds = ShardDataset(plugin_model / "data", c)
    x, y = ds.batch(range(20, 24))  # val_size = 4: the last 4 of 24 examples
    model, _ = load_model(plugin_model / "run" / "last.pt", c)
    with torch.no_grad():
        expected = float(((model(x) - y) ** 2).mean())
    records = [json.loads(line) for line in (plugin_model / "run" / "metrics.jsonl").read_text().splitlines()]
    last_val = [r for r in records if r["type"] == "val"][-1]
    assert last_val["step"] == 4 and last_val["val_loss"] == pytest.approx(expected, rel=1e-5)
    render_dataset(c, tmp_path / "ref", 8, shard_size=8, store="audio", progress=False)
    shutil.copytree(plugin_model / "run", tmp_path / "run")
    config = (plugin_model / "train.toml").read_text().replace(str(plugin_model / "data"), str(tmp_path / "ref"))
    (tmp_path / "train.toml").write_text(config.replace("steps = 4", "steps = 6"))
    capsys.readouterr()
    rc = cli.main(
        [
            "train",
            "--config",
            str(tmp_path / "train.toml"),
            "--out",
            str(tmp_path / "run"),
            "--resume",
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and f"was trained on synth {synth.identity!r}, not on 'reference'" in err and "Traceback" not in err
