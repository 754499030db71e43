"""Display proxies: round trip, missing frames, interrupted and resumed builds, memory maps."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from mcss_studio.core.imageops import fast_area_resize
from mcss_studio.core.proxies import (
    ProxyMissingError,
    ProxyStore,
    ProxyWriter,
    build_proxies,
    proxy_dir,
    proxy_size,
)
from mcss_studio.core.sequence import CameraView, MultiviewSequence
from mcss_studio.core.video import open_frame_source
from tests.videofixtures import synthetic_frames, write_image_folder, write_video

T, W, H = 20, 160, 96
MAX_SIDE = 64


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return synthetic_frames(T, W, H, seed=11)


def expected_proxy(rgb: np.ndarray, max_side: int = MAX_SIDE, quality: int = 90) -> np.ndarray:
    """The same pipeline done by hand: area resize (halving steps first), JPEG encode, decode."""
    pw, ph = proxy_size(rgb.shape[1], rgb.shape[0], max_side)
    small = fast_area_resize(rgb, (pw, ph))
    ok, jpeg = cv2.imencode(".jpg", small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]


def test_proxy_size_keeps_aspect_and_never_upscales():
    assert proxy_size(1920, 1080, 480) == (480, 270)
    assert proxy_size(1080, 1920, 480) == (270, 480)  # portrait
    assert proxy_size(320, 240, 480) == (320, 240)
    assert proxy_size(1001, 3, 100) == (100, 1)


def test_round_trip(tmp_path, frames):
    with ProxyWriter(tmp_path, 0, T, MAX_SIDE) as pw:
        for t in range(T):
            pw.add(t, frames[t])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.blob", "0.idx", "0.json"]
    store = ProxyStore.open(tmp_path)
    assert store.available(0) and store.complete(0) and not store.available(1)
    assert store.size(0) == (64, 38)
    assert store.scale(0) == pytest.approx(64 / 160)
    sx, sy = store.scale_xy(0)
    assert sy == pytest.approx(38 / 96)
    for t in [5, 0, T - 1, 7, 7]:
        got = store.read(0, t)
        assert got.dtype == np.uint8 and got.shape == (38, 64, 3)
        assert np.array_equal(got, expected_proxy(frames[t]))
    idx = np.fromfile(tmp_path / "0.idx", dtype=np.int64).reshape(T, 2)
    assert (idx[:, 1] > 0).all()
    assert idx[-1, 0] + idx[-1, 1] == (tmp_path / "0.blob").stat().st_size


def test_store_is_memory_mapped(tmp_path, frames):
    with ProxyWriter(tmp_path, 2, T, MAX_SIDE) as pw:
        for t in range(T):
            pw.add(t, frames[t])
    store = ProxyStore.open(tmp_path)
    store.read(2, 3)
    idx, blob, _ = store._camera(2)
    assert isinstance(idx, np.memmap) and isinstance(blob, np.memmap)
    assert blob.filename is not None and str(blob.filename).endswith("2.blob")
    assert blob.mode == "r"


def test_missing_frames(tmp_path, frames):
    with ProxyWriter(tmp_path, 0, T, MAX_SIDE) as pw:
        for t in range(0, T, 3):
            pw.add(t, frames[t])
        assert list(pw.missing()[:3]) == [1, 2, 4]
    store = ProxyStore.open(tmp_path)
    assert store.available(0) and not store.complete(0)
    assert json.loads((tmp_path / "0.json").read_text())["complete"] is False
    assert store.has(0, 3) and not store.has(0, 4)
    with pytest.raises(ProxyMissingError):
        store.read(0, 4)
    with pytest.raises(ProxyMissingError):
        store.read(1, 0)
    with pytest.raises(IndexError):
        store.read(0, T)
    assert np.array_equal(store.read(0, 3), expected_proxy(frames[3]))


def test_interrupted_build_is_invisible_then_resumes(tmp_path, frames):
    with pytest.raises(RuntimeError):
        with ProxyWriter(tmp_path, 0, T, MAX_SIDE) as pw:
            for t in range(8):
                pw.add(t, frames[t])
            raise RuntimeError("killed")
    assert not ProxyStore.open(tmp_path).available(0)  # nothing claims to be done
    # a crash in the middle of an append leaves half a JPEG at the end of the blob
    with open(tmp_path / "0.blob.partial", "ab") as fh:
        fh.write(b"\xff\xd8 half a jpeg")
    pw = ProxyWriter(tmp_path, 0, T, MAX_SIDE, native_size=(W, H))
    assert pw.has(7) and not pw.has(8)
    assert list(pw.missing()) == list(range(8, T))
    for t in range(T):
        pw.add(t, frames[t])  # frames already there are skipped
    assert pw.close() is True
    store = ProxyStore.open(tmp_path)
    assert store.complete(0)
    for t in range(T):
        assert np.array_equal(store.read(0, t), expected_proxy(frames[t]))
    assert not list(tmp_path.glob("*.partial"))


def test_incomplete_final_build_resumes(tmp_path, frames):
    with ProxyWriter(tmp_path, 0, T, MAX_SIDE) as pw:
        for t in range(5):
            pw.add(t, frames[t])
    with ProxyWriter(tmp_path, 0, T, MAX_SIDE) as pw:
        assert list(pw.missing()) == list(range(5, T))
        for t in range(5, T):
            pw.add(t, frames[t])
    store = ProxyStore.open(tmp_path)
    assert store.complete(0)
    assert np.array_equal(store.read(0, 2), expected_proxy(frames[2]))
    assert np.array_equal(store.read(0, T - 1), expected_proxy(frames[T - 1]))


def test_other_settings_start_fresh(tmp_path, frames):
    with ProxyWriter(tmp_path, 0, T, MAX_SIDE) as pw:
        pw.add(0, frames[0])
        pw.add(1, frames[1])
    with ProxyWriter(tmp_path, 0, T, 32) as pw:
        assert len(pw.missing()) == T
        pw.add(1, frames[1])
    store = ProxyStore.open(tmp_path)
    assert store.size(0) == (32, 19)
    assert not store.has(0, 0)
    assert np.array_equal(store.read(0, 1), expected_proxy(frames[1], 32))


def test_wrong_frame_size_is_refused(tmp_path, frames):
    with ProxyWriter(tmp_path, 0, T, MAX_SIDE, native_size=(W, H)) as pw:
        with pytest.raises(ValueError):
            pw.add(0, frames[0][:, :-1])
        with pytest.raises(IndexError):
            pw.add(T, frames[0])


def make_sequence(tmp_path, frames) -> MultiviewSequence:
    """Two cameras: an H.264 video with an offset of 2 and a portrait image folder."""
    video = write_video(tmp_path / "rec" / "cam0.mp4", frames, codec="h264", gop=8, bframes=2)
    portrait = np.ascontiguousarray(frames.transpose(0, 2, 1, 3)[:, :, ::-1])
    folder = write_image_folder(tmp_path / "rec" / "cam1", portrait[: T - 2])
    cams = [
        CameraView("cam0", open_frame_source(video), offset=2),
        CameraView("cam1", open_frame_source(folder), offset=0),
    ]
    return MultiviewSequence(tmp_path / "rec", "rec", cams, num_frames=T - 2, fps=30.0)


def test_build_proxies_with_cancel_and_resume(tmp_path, frames):
    seq = make_sequence(tmp_path, frames)
    cache = tmp_path / "cache"
    calls = []

    def cancel_after_five(done: int, total: int) -> bool:
        calls.append((done, total))
        return done < 5

    assert build_proxies(seq, cache, max_side=MAX_SIDE, progress=cancel_after_five) is False
    assert calls[-1] == (5, 2 * (T - 2))
    store = ProxyStore(cache, seq)
    assert store.directory == proxy_dir(cache, seq) == cache / "proxies" / seq.key
    assert not store.available(0)

    seen = []
    assert build_proxies(seq, cache, max_side=MAX_SIDE, progress=lambda d, n: seen.append(d))
    assert seen[-1] == 2 * (T - 2)
    assert seen[0] == 6  # the five frames of the cancelled run were kept
    store.refresh()
    assert store.complete(0) and store.complete(1)
    assert store.size(1) == (38, 64) and store.scale_xy(1)[1] == pytest.approx(64 / 160)
    for c in (0, 1):
        for t in (0, 7, T - 3):
            assert np.array_equal(store.read(c, t), expected_proxy(seq.frame(c, t)))
    blob_time = (proxy_dir(cache, seq) / "0.blob").stat().st_mtime_ns
    assert build_proxies(seq, cache, max_side=MAX_SIDE)  # already complete: nothing rewritten
    assert (proxy_dir(cache, seq) / "0.blob").stat().st_mtime_ns == blob_time
    seq.close()
