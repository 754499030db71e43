"""The detector keypoint store and `mcss-data keypoints`, with a fake detector (no mediapipe):
resume, staleness, foreign files left alone, kill mid-write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mcss_studio.cli import data as data_cli
from mcss_studio.cli import keypoints as keypoints_cli
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.keypoint_store import compute_keypoints, keypoints_path, load_keypoints
from mcss_studio.core.pose_detector import Detection
from mcss_studio.core.sources.folder import open_recording

REPO = Path(__file__).resolve().parents[1]


class FakeDetector:
    """Joints from the image's mean colour: the same frame always gives the same answer."""

    detector_id = "fake-1"

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay

    def detect(self, rgb: np.ndarray) -> Detection:
        self.calls += 1
        time.sleep(self.delay)
        m = rgb.reshape(-1, 3).mean(axis=0)
        joints = np.tile(m[:2], (17, 1)) + np.arange(17)[:, None]
        return Detection(joints, np.full(17, m[2] / 255), np.array([1.0, 2.0, 30.0, 40.0]))


def expected(seq, camera: int, t: int) -> Detection:
    return FakeDetector().detect(seq.frame(camera, t))


def test_compute_stores_every_camera_and_frame_and_reloads(make_recording, tmp_path):
    with open_recording(make_recording(cameras=2, frames=6)) as seq:
        path = keypoints_path(tmp_path / "cache", seq)
        det = FakeDetector()
        store = compute_keypoints(seq, path, det)
        assert det.calls == 12 and store.complete
        again = load_keypoints(path, seq, "fake-1")
        assert again is not None and again.complete
        joints, conf = again.frame(4)
        want = expected(seq, 1, 4)
        np.testing.assert_allclose(joints[1], want.joints, rtol=1e-6)
        np.testing.assert_allclose(conf[1], want.confidence, rtol=1e-6)
        np.testing.assert_allclose(again.boxes[0, 3], [1, 2, 30, 40])


def test_an_interrupted_run_resumes_with_only_the_missing_frames(make_recording, tmp_path):
    with open_recording(make_recording(cameras=2, frames=6)) as seq:
        path = keypoints_path(tmp_path / "cache", seq)
        first = FakeDetector()
        partial = compute_keypoints(seq, path, first, cancelled=lambda: first.calls >= 4)
        assert not partial.complete and partial.frame(0) is None  # camera 1 not done yet
        saved = load_keypoints(path, seq, "fake-1")
        assert saved is not None and int(saved.done.sum()) == 4
        second = FakeDetector()
        store = compute_keypoints(seq, path, second)
        assert second.calls == 8 and store.complete
        np.testing.assert_allclose(store.frame(5)[0][0], expected(seq, 0, 5).joints, rtol=1e-6)


def test_a_changed_video_or_another_detector_makes_the_store_stale(make_recording, tmp_path):
    folder = make_recording(cameras=2, frames=4)
    with open_recording(folder) as seq:
        path = keypoints_path(tmp_path / "cache", seq)
        compute_keypoints(seq, path, FakeDetector())
        assert load_keypoints(path, seq, "fake-1") is not None
        assert load_keypoints(path, seq, "other-detector") is None
    st = os.stat(folder / "cam1.mp4")
    os.utime(folder / "cam1.mp4", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with open_recording(folder) as seq:
        assert load_keypoints(path, seq, "fake-1") is None
        det = FakeDetector()
        assert compute_keypoints(seq, path, det).complete and det.calls == 8  # all again


@pytest.mark.parametrize("content", [b"not a zip at all", "npz-without-marker"])
def test_a_foreign_file_is_reported_and_left_untouched(make_recording, tmp_path, content):
    with open_recording(make_recording(cameras=2, frames=3)) as seq:
        path = keypoints_path(tmp_path / "cache", seq)
        path.parent.mkdir(parents=True)
        if content == "npz-without-marker":
            np.savez(path, joints=np.zeros(3))
        else:
            path.write_bytes(content)
        before = path.read_bytes()
        with pytest.raises(UserInputError, match="not a keypoint store") as info:
            compute_keypoints(seq, path, FakeDetector())
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        assert path.read_bytes() == before


def test_a_failed_save_keeps_the_previous_file(make_recording, tmp_path, monkeypatch):
    with open_recording(make_recording(cameras=1, frames=3)) as seq:
        path = keypoints_path(tmp_path / "cache", seq)
        first = FakeDetector()
        compute_keypoints(seq, path, first, cancelled=lambda: first.calls >= 2)
        before = path.read_bytes()

        def half_then_fail(fh, **arrays):
            fh.write(b"PK\x03\x04 half a zip")
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(np, "savez", half_then_fail)
        with pytest.raises(UserInputError, match="disk is full"):
            compute_keypoints(seq, path, FakeDetector())
        assert path.read_bytes() == before


KILL_SCRIPT = """
import sys
from tests.test_keypoint_store import FakeDetector
from mcss_studio.core.keypoint_store import compute_keypoints
from mcss_studio.core.sources.folder import open_recording
seq = open_recording(sys.argv[1])
print("go", flush=True)
compute_keypoints(seq, sys.argv[2], FakeDetector(delay=0.004), save_seconds=0.0)
"""


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_readable_store_of_right_values(
        make_recording, tmp_path):
    folder = make_recording(cameras=2, frames=40)
    rng = np.random.default_rng(0)
    with open_recording(folder) as seq:
        path = keypoints_path(tmp_path / "cache", seq)
        truth = {(c, t): expected(seq, c, t).joints for c in range(2) for t in range(40)}
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        trials_with_progress = 0
        for _ in range(20):
            proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(folder), str(path)],
                                    stdout=subprocess.PIPE, env=env, cwd=REPO)
            assert proc.stdout.readline().strip() == b"go"
            time.sleep(rng.uniform(0.0, 0.25))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            store = load_keypoints(path, seq, "fake-1")  # never raises: old file or new one
            if store is None:
                continue
            trials_with_progress += 1
            for c, t in zip(*np.nonzero(store.done)):
                np.testing.assert_allclose(store.joints[c, t], truth[c, t], rtol=1e-6)
            assert np.isnan(store.joints[~store.done]).all()
        assert trials_with_progress > 0
        assert not [p for p in path.parent.iterdir() if p.name != path.name
                    and not p.name.endswith(".tmp")]


def test_cli_json_summary_with_an_injected_detector(make_recording, monkeypatch, capsys):
    folder = make_recording(cameras=2, frames=3)
    monkeypatch.setattr(keypoints_cli, "make_detector", FakeDetector)
    assert data_cli.main(["keypoints", str(folder), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["complete"] and doc["frames"] == 3 and doc["detector"] == "fake-1"
    assert [c["person"] for c in doc["cameras"]] == [3, 3]
    assert Path(doc["file"]).parent == folder / "cache" / "keypoints"


def test_cli_without_mediapipe_exits_2_with_one_line(make_recording, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    assert data_cli.main(["keypoints", str(make_recording(cameras=2, frames=3))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs mediapipe 0.10.14" in err and "pip install" in err
