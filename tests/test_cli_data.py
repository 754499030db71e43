"""`mcss-data` as a user runs it: JSON shape, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mcss_studio.cli.data", *args],
        capture_output=True, text=True, timeout=300,
    )


def test_inspect_json_document(make_recording):
    folder = make_recording(cameras=2, frames=[9, 8])
    res = run_cli("inspect", str(folder), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc) == {"unit", "frames", "has_3d", "joints", "cameras", "warnings"}
    assert len(doc["warnings"]) == 1 and "common 8 frames" in doc["warnings"][0]
    assert doc["unit"] == "mm" and doc["frames"] == 8 and doc["has_3d"] and doc["joints"] == 17
    cam = doc["cameras"][0]
    assert set(cam) == {"name", "width", "height", "fps", "frames", "offset", "K", "R", "t", "dist"}
    assert cam["name"] == "cam0" and cam["frames"] == 9 and cam["offset"] == 0
    assert len(cam["K"]) == 3 and len(cam["dist"]) == 5
    assert "warning" in res.stderr and "common 8 frames" in res.stderr


def test_inspect_without_calibration_has_null_camera_fields(make_recording):
    folder = make_recording(cameras=1, frames=3, calibration=False, joints=False)
    doc = json.loads(run_cli("inspect", str(folder), "--json").stdout)
    assert doc["has_3d"] is False
    assert all(doc["cameras"][0][k] is None for k in ("K", "R", "t", "dist"))


def test_inspect_human_readable(make_recording):
    res = run_cli("inspect", str(make_recording(cameras=2, frames=4)))
    assert res.returncode == 0
    assert "camera cam1: 64x48 @ 25 fps, 4 frames, offset 0, calibrated" in res.stdout


@pytest.mark.parametrize("make_bad", ["missing", "empty", "notvideo"])
def test_bad_input_is_one_line_and_nonzero(tmp_path, make_bad):
    target = tmp_path / "rec"
    if make_bad != "missing":
        target.mkdir()
    if make_bad == "notvideo":
        (target / "cam0.mp4").write_text("this is not a video")
    res = run_cli("inspect", str(target), "--json")
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mcss-data: error: ")
    assert str(target) in lines[0] and "Traceback" not in res.stderr


def test_cache_command_builds_crops_and_proxies(make_recording, tmp_path):
    from mcss_studio.core import open_sequence
    from mcss_studio.core.cache import CropCache
    from mcss_studio.core.proxies import ProxyStore

    folder = make_recording(cameras=2, frames=6)
    cache_dir = tmp_path / "cache"
    res = run_cli("cache", str(folder), "--cache", str(cache_dir), "--crop-size", "32")
    assert res.returncode == 0, res.stderr
    assert "2 cameras x 6 frames, 32px crops" in res.stdout
    with open_sequence(folder) as seq:
        cache = CropCache.open(cache_dir, seq)
        assert cache.crops(1).shape == (6, 32, 32, 3) and cache.box_method == "gt"
        assert ProxyStore(cache_dir, seq).complete(0)


def test_cache_command_on_a_broken_recording_writes_nothing(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "cam0.mp4").write_bytes(b"\x00" * 100)
    res = run_cli("cache", str(rec), "--cache", str(tmp_path / "cache"))
    assert res.returncode == 2 and "cam0.mp4" in res.stderr
    assert not (tmp_path / "cache").exists()


def test_synth_command_writes_an_openable_dataset(tmp_path):
    out = tmp_path / "tiny"
    res = run_cli("synth", str(out), "--preset", "tiny", "--cameras", "2", "--workers", "1")
    assert res.returncode == 0, res.stderr
    doc = json.loads(run_cli("inspect", str(out), "--json").stdout)
    assert doc["has_3d"] and len(doc["cameras"]) == 2 and doc["cameras"][0]["K"] is not None
    assert "S1" in doc["sequence"] and len(doc["sequences"]) >= 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "huge"], "--preset"),
        (["--cameras", "0"], "--cameras"),
        (["--size", "320by240"], "--size"),
    ],
)
def test_synth_bad_arguments(tmp_path, args, message):
    res = run_cli("synth", str(tmp_path / "out"), *args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


def test_motion_stats_prints_each_action_and_refuses_a_bad_window(capsys):
    from mcss_studio.cli.data import main

    assert main(["motion-stats", "--preset", "tiny", "--tau", "2", "--tau-max", "4"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "preset tiny, seed 0"
    assert any(line.startswith("walk ") for line in lines)
    assert any(line.startswith("wave ") for line in lines)
    assert any(line.startswith("all ") for line in lines) and "2-4" in out
    assert main(["motion-stats", "--preset", "tiny", "--tau", "5", "--tau-max", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--tau" in err and "\n" not in err
