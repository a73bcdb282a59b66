"""core/atomic (issue 22, item 5): whole files or the old ones, several files as one unit, a full disk is a
one-line DiskFull naming the path and the space needed. The full disk is a real one (a small tmpfs)."""

from __future__ import annotations

import errno

import pytest

from synthmatch.bridge.core import atomic
from synthmatch.bridge.core.atomic import DiskFull, write_all, write_atomic
from synthmatch.bridge.core.errors import UsageError, clip, os_error_advice
from tests.fulldisk import fill, small_disk


def test_write_all_on_a_full_disk_leaves_every_old_file(tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        old = {disk / "params.json": b"{}\n", disk / "match.wav": b"RIFF" * 1000, disk / "compare.png": b"PNG"}
        write_all(old)
        fill(disk, leave=50_000)
        new = {disk / "params.json": b"{new}\n", disk / "match.wav": b"x" * 40_000, disk / "compare.png": b"y" * 90_000}
        with pytest.raises(DiskFull) as e:
            write_all(new)
        msg = str(e.value)
        assert str(disk / "compare.png") in msg and "disk is full" in msg and "needs" in msg and "free" in msg
        assert "\n" not in msg
        for p, data in old.items():
            assert p.read_bytes() == data  # all old: not one of the three replaced
        assert sorted(p.name for p in disk.iterdir()) == ["compare.png", "filler", "match.wav", "params.json"]


def test_write_atomic_on_a_full_disk_names_the_exact_size(tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        fill(disk)
        with pytest.raises(DiskFull, match=r"model\.onnx: the disk is full \(needs 3\.0 MB"):
            write_atomic(disk / "model.onnx", b"\0" * 3_000_000)
        with pytest.raises(DiskFull, match=r"w\.bin: the disk is full"):  # written by a function: size unknown
            write_atomic(disk / "w.bin", lambda f: f.write(b"\0" * 3_000_000))
        assert not [p for p in disk.iterdir() if p.name.endswith(".tmp")]


def test_a_name_near_255_bytes_is_written(tmp_path):
    name = "x" * 250 + ".json"  # the temporary name beside it must not grow past 255 bytes
    assert write_atomic(tmp_path / name, b"{}").read_bytes() == b"{}"


def test_disk_full_is_a_usage_error():
    assert issubclass(DiskFull, UsageError)
    assert "needs more space" in str(atomic.disk_full("/nonexistent/x", None))


def test_os_error_advice_for_long_names_and_full_disks():
    long = OSError(errno.ENAMETOOLONG, "File name too long", "/a/" + "n" * 300)
    assert "255 bytes" in os_error_advice(long) and len(os_error_advice(long)) < 500
    assert "no space left" in os_error_advice(OSError(errno.ENOSPC, "No space left on device", "/x"))
    assert os_error_advice(OSError(errno.EIO, "I/O error")) is None


def test_clip_keeps_start_and_end_of_a_huge_message():
    text = "config.x = '" + "a" * 50_000_000 + "': expected float"
    out = clip(text)
    assert len(out) < 1300 and out.startswith("config.x = 'aaa") and out.endswith("expected float")
