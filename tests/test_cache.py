"""Crop cache: pixels equal direct crops, resume, staleness, memmap reader."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from mcss_studio.core.cache import CropCache, build_cache, crop_square, crop_squares, crops_dir
from mcss_studio.core.errors import UserInputError
from tests.test_boxes import make_seq

T = 14


def videos() -> list[np.ndarray]:
    """Two cameras of different sizes with a moving gradient; deterministic."""
    out = []
    for c, (h, w) in enumerate([(48, 64), (60, 40)]):
        yy, xx = np.mgrid[0:h, 0:w]
        frames = np.empty((T, h, w, 3), np.uint8)
        for t in range(T):
            frames[t, ..., 0] = (xx * 4 + t * 7) % 256
            frames[t, ..., 1] = (yy * 5 + c * 50) % 256
            frames[t, ..., 2] = (xx * yy + t) % 256
        out.append(frames)
    return out


def given_boxes() -> np.ndarray:
    b = np.full((2, T, 4), np.nan)
    for t in range(T):
        b[0, t] = (5 + t, 4, 25 + t, 34)  # inside, moving
        b[1, t] = (-10, 30, 20, 70)  # hanging over the left and bottom edges
    b[0, 3] = np.nan  # no person: centred square
    return b


@pytest.fixture
def seq(tmp_path: Path):
    for i in range(2):
        (tmp_path / f"cam{i}.mp4").write_bytes(b"stand-in for the video file")
    return make_seq(tmp_path, videos())


def direct_crop(frame: np.ndarray, square: np.ndarray, size: int) -> np.ndarray:
    """Independent reference: paste the frame on a big black canvas, slice, resize."""
    x0, y0, x1, y1 = (int(v) for v in square)
    pad = 200
    canvas = np.zeros((frame.shape[0] + 2 * pad, frame.shape[1] + 2 * pad, 3), np.uint8)
    canvas[pad : pad + frame.shape[0], pad : pad + frame.shape[1]] = frame
    region = canvas[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    side = x1 - x0
    while side >= 4 * size:  # documented: exact 2x2 means first
        assert side % 2 == 0
        side //= 2
        region = cv2.resize(region, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)


def test_two_step_area_resize_matches_single_inter_area() -> None:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    frame = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 8), None, 0, 255, cv2.NORM_MINMAX)
    squares = crop_squares(np.array([[[50.0, 20, 260, 290]]]), 0.1, [(400, 400)], 32)
    x0, y0, x1, y1 = squares[0, 0].astype(int)
    side = x1 - x0
    assert side == 296  # 297 trimmed to a multiple of 4: halved twice (to 74), then to 32
    single = cv2.resize(frame[y0:y1, x0:x1], (32, 32), interpolation=cv2.INTER_AREA)
    diff = np.abs(crop_square(frame, squares[0, 0], 32).astype(int) - single)
    assert diff.max() <= 4 and diff.mean() < 1.0


def test_crops_equal_direct_crops(seq, tmp_path: Path) -> None:
    cache = build_cache(seq, tmp_path / "cache", crop_size=16, margin=0.25, boxes=given_boxes(),
                        proxies=False)
    assert cache.crop_size == 16 and cache.num_frames == T
    assert cache.camera_names == ["cam0", "cam1"]
    assert cache.boxes.shape == (2, T, 4)
    frames = videos()
    for c in range(2):
        for t in range(T):
            sq = cache.boxes[c, t]
            side = sq[2] - sq[0]
            assert side == sq[3] - sq[1] and side == np.round(side)
            np.testing.assert_array_equal(cache.get(c, t), direct_crop(frames[c][t], sq, 16))
    # box 0: centre (15, 19), side 30 * 1.25 = 37.5 -> 38; missing box -> centred image square
    np.testing.assert_array_equal(cache.boxes[0, 0], [-4, 0, 34, 38])
    np.testing.assert_array_equal(cache.boxes[0, 3], [8, 0, 56, 48])
    assert cache.box_method == "given"


def test_memmap_is_file_backed_and_read_only(seq, tmp_path: Path) -> None:
    build_cache(seq, tmp_path / "cache", crop_size=16, boxes=given_boxes(), proxies=False)
    cache = CropCache.open(tmp_path / "cache", seq)
    m = cache.crops(1)
    assert isinstance(m, np.memmap) and m.shape == (T, 16, 16, 3) and m.dtype == np.uint8
    assert Path(m.filename) == crops_dir(tmp_path / "cache", seq) / "1.u8"
    assert not m.flags.writeable
    with pytest.raises(IndexError):
        cache.get(0, T)


def test_resume_after_interruption_gives_identical_bytes(seq, tmp_path: Path) -> None:
    ref = build_cache(seq, tmp_path / "ref", crop_size=16, boxes=given_boxes(), proxies=False)

    class Stop(Exception):
        pass

    def interrupt(done: int, total: int) -> None:
        if done == 9:
            raise Stop

    with pytest.raises(Stop):
        build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False,
                    progress=interrupt, workers=1)
    folder = crops_dir(tmp_path / "c", seq)
    assert np.fromfile(folder / "0.done", np.uint8).sum() == 9
    if hasattr(os, "posix_fallocate"):  # disk space reserved up front, not a sparse file
        assert (folder / "1.u8").stat().st_blocks * 512 >= (folder / "1.u8").stat().st_size
    with pytest.raises(UserInputError, match="incomplete"):
        CropCache.open(tmp_path / "c", seq)
    seen = []
    cache = build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False,
                        progress=lambda d, n: seen.append((d, n)), workers=1)
    assert seen[-1] == (2 * T - 9, 2 * T - 9)  # only the missing frames were decoded
    for c in range(2):
        ref_bytes = (crops_dir(tmp_path / "ref", seq) / f"{c}.u8").read_bytes()
        assert (folder / f"{c}.u8").read_bytes() == ref_bytes
        np.testing.assert_array_equal(cache.crops(c), ref.crops(c))
    np.testing.assert_array_equal(cache.boxes, ref.boxes)


def test_interruption_in_parallel_build_resumes(seq, tmp_path: Path) -> None:
    def interrupt(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False,
                    progress=interrupt, workers=2)
    cache = build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    ref = build_cache(seq, tmp_path / "ref", crop_size=16, boxes=given_boxes(), proxies=False,
                      workers=1)
    for c in range(2):
        np.testing.assert_array_equal(cache.crops(c), ref.crops(c))


def test_damaged_crop_file_is_redone_not_trusted(seq, tmp_path: Path) -> None:
    def interrupt(done: int, total: int) -> None:
        if done == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False,
                    progress=interrupt, workers=1)
    folder = crops_dir(tmp_path / "c", seq)
    with open(folder / "0.u8", "r+b") as f:
        f.truncate(100)  # damaged while its done-bytes say 6 crops are there
    cache = build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    np.testing.assert_array_equal(cache.get(0, 2), direct_crop(videos()[0][2], cache.boxes[0, 2],
                                                               16))


def test_complete_cache_is_reused_without_decoding(seq, tmp_path: Path) -> None:
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    calls = []
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False,
                progress=lambda d, n: calls.append(d))
    assert calls == []


def test_stale_cache_is_rebuilt(seq, tmp_path: Path) -> None:
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    cache = build_cache(seq, tmp_path / "c", crop_size=24, boxes=given_boxes(), proxies=False)
    assert cache.crop_size == 24 and cache.crops(0).shape == (T, 24, 24, 3)
    np.testing.assert_array_equal(cache.get(1, 5), direct_crop(videos()[1][5], cache.boxes[1, 5],
                                                               24))
    other = given_boxes()
    other[0, :, 0] -= 3  # different boxes -> different crops
    cache = build_cache(seq, tmp_path / "c", crop_size=24, boxes=other, proxies=False)
    np.testing.assert_array_equal(cache.get(0, 5), direct_crop(videos()[0][5], cache.boxes[0, 5],
                                                               24))
    assert cache.boxes[0, 5, 0] != build_cache(seq, tmp_path / "d", crop_size=24,
                                               boxes=given_boxes(), proxies=False).boxes[0, 5, 0]


def test_open_refuses_missing_or_changed_inputs(seq, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no crop cache"):
        CropCache.open(tmp_path / "c", seq)
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    os.utime(tmp_path / "cam1.mp4", ns=(1, 1))  # the video changed
    with pytest.raises(UserInputError, match="stale"):
        CropCache.open(tmp_path / "c", seq)
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    CropCache.open(tmp_path / "c", seq)
    folder = crops_dir(tmp_path / "c", seq)
    with open(folder / "0.u8", "r+b") as f:
        f.truncate(10)
    with pytest.raises(UserInputError, match="truncated"):
        CropCache.open(tmp_path / "c", seq)


def test_auto_boxes_and_bad_arguments(seq, tmp_path: Path) -> None:
    cache = build_cache(seq, tmp_path / "c", crop_size=16, proxies=False)
    assert cache.box_method in ("tracked", "full")
    with pytest.raises(UserInputError, match="shape"):
        build_cache(seq, tmp_path / "c", boxes=np.zeros((2, 3, 4)), proxies=False)
    with pytest.raises(UserInputError, match="crop size"):
        build_cache(seq, tmp_path / "c", crop_size=2, proxies=False)


def test_proxies_come_from_the_same_pass_and_resume(seq, tmp_path: Path) -> None:
    from mcss_studio.core.proxies import ProxyStore

    def interrupt(done: int, total: int) -> None:
        if done == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxy_max_side=32,
                    progress=interrupt, workers=1)
    assert not ProxyStore(tmp_path / "c", seq).complete(1)
    seen = []
    cache = build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxy_max_side=32,
                        progress=lambda d, n: seen.append(n), workers=1)
    assert seen[-1] == 2 * T - 20
    store = ProxyStore(tmp_path / "c", seq)
    frames = videos()
    for c in range(2):
        assert store.complete(c) and store.num_frames(c) == T
        proxy = store.read(c, 7).astype(int)
        assert max(proxy.shape[:2]) == 32
        errors = [
            np.abs(proxy - cv2.resize(f, proxy.shape[1::-1], interpolation=cv2.INTER_AREA)).mean()
            for f in frames[c]
        ]
        assert int(np.argmin(errors)) == 7  # a JPEG of frame 7, not of a neighbour
    np.testing.assert_array_equal(cache.get(0, 2), direct_crop(frames[0][2], cache.boxes[0, 2], 16))


def test_proxies_added_later_keep_the_crops(seq, tmp_path: Path) -> None:
    from mcss_studio.core.proxies import ProxyStore

    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    before = (crops_dir(tmp_path / "c", seq) / "0.u8").stat().st_mtime_ns
    seen = []
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxy_max_side=32,
                progress=lambda d, n: seen.append(d))
    assert len(seen) == 2 * T and ProxyStore(tmp_path / "c", seq).complete(0)
    assert (crops_dir(tmp_path / "c", seq) / "0.u8").stat().st_mtime_ns == before
    seen.clear()
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxy_max_side=32,
                progress=lambda d, n: seen.append(d))
    assert seen == []
    os.utime(tmp_path / "cam0.mp4", ns=(1, 1))  # a changed video: crops and proxies redone
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxy_max_side=32,
                progress=lambda d, n: seen.append(d))
    assert len(seen) == 2 * T


def test_concurrent_build_is_refused(seq, tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    folder = crops_dir(tmp_path / "c", seq)
    folder.mkdir(parents=True)
    with open(folder / ".lock", "ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(UserInputError, match="another crop-cache build"):
            build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)


def test_complete_cache_opens_while_another_process_holds_the_lock(seq, tmp_path: Path) -> None:
    """Readers of a finished cache (two trainers, the Studio) never wait for or trip the lock."""
    fcntl = pytest.importorskip("fcntl")
    first = build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    folder = crops_dir(tmp_path / "c", seq)
    with open(folder / ".lock", "ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        again = build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(),
                            proxies=False)
        assert np.array_equal(np.asarray(again.crops(0)), np.asarray(first.crops(0)))
        with pytest.raises(UserInputError, match="another crop-cache build"):  # new settings
            build_cache(seq, tmp_path / "c", crop_size=8, boxes=given_boxes(), proxies=False)


def test_real_videos_with_offsets_and_file_boxes(tmp_path: Path) -> None:
    """End to end: H.264 files, a frame offset, boxes.csv; crops equal crops of seq.frame()."""
    from mcss_studio.core import open_sequence
    from mcss_studio.core.boxes import save_boxes_csv
    from mcss_studio.core.video_writer import VideoWriter

    rec = tmp_path / "rec"
    rec.mkdir()
    rng = np.random.default_rng(5)
    for name, n in (("a", 12), ("b", 14)):
        with VideoWriter(rec / f"{name}.mp4", 25.0, 96, 64, codec="h264", gop=4) as w:
            for _ in range(n):
                small = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
                w.write(cv2.resize(small, (96, 64), interpolation=cv2.INTER_CUBIC))
    (rec / "sequence.toml").write_text("[offsets]\nb = 2\n")
    boxes = np.tile(np.array([10.0, 5, 60, 55]), (2, 12, 1))
    boxes[1, :, 0] += np.arange(12)
    save_boxes_csv(rec / "boxes.csv", boxes, ["a", "b"])
    seq = open_sequence(rec)
    assert seq.num_frames == 12 and seq.boxes is not None
    cache = build_cache(seq, tmp_path / "cache", crop_size=16, proxy_max_side=48)
    assert cache.box_method == "file"
    for c in range(2):
        for t in range(12):
            expected = direct_crop(seq.frame(c, t), cache.boxes[c, t], 16)
            np.testing.assert_array_equal(cache.get(c, t), expected)
    seq.close()


def old_pixels(cache: CropCache) -> list[np.ndarray]:
    return [np.array(cache.crops(c)) for c in range(len(cache.camera_names))]


def test_an_open_cache_reads_its_own_files_after_a_rebuild_at_another_size(seq, tmp_path):
    """One folder holds one crop size: a 24 px build replaces the 16 px files. A reader opened
    before keeps reading the 16 px crops it opened, on first access too (no map by name)."""
    small = build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    expected = [direct_crop(videos()[c][5], small.boxes[c, 5], 16) for c in range(2)]
    big = build_cache(seq, tmp_path / "c", crop_size=24, boxes=given_boxes(), proxies=False)
    for c in range(2):  # the first access of each camera comes after the rebuild
        np.testing.assert_array_equal(small.get(c, 5), expected[c])
    assert big.get(0, 5).shape == (24, 24, 3)
    np.testing.assert_array_equal(big.get(1, 5), direct_crop(videos()[1][5], big.boxes[1, 5],
                                                             24))


def test_an_open_cache_survives_a_smaller_rebuild_still_in_progress(seq, tmp_path):
    """The reported failure: the new files are smaller (and still being written) than the map
    the old reader needs ("mmap length is greater than file size" before)."""
    big = build_cache(seq, tmp_path / "c", crop_size=24, boxes=given_boxes(), proxies=False)
    expected = [direct_crop(videos()[c][9], big.boxes[c, 9], 24) for c in range(2)]

    def interrupt(done: int, total: int) -> None:
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False,
                    progress=interrupt, workers=1)
    for c in range(2):
        np.testing.assert_array_equal(big.get(c, 9), expected[c])
    big.close()
    with pytest.raises(UserInputError, match="closed"):
        big.get(0, 9)


def test_a_cache_rebuilt_while_it_opens_is_refused_in_one_line(seq, tmp_path, monkeypatch):
    """Same crop size, other margin: equal file sizes, other pixels. A rebuild between reading
    meta.json and opening the files must not give the new pixels under the old metadata."""
    import mcss_studio.core.cache as cache_mod

    build_cache(seq, tmp_path / "c", crop_size=16, margin=0.2, boxes=given_boxes(),
                proxies=False)
    real = cache_mod._read_meta
    rebuilt = []

    def meta_then_rebuild(folder):
        meta = real(folder)
        if not rebuilt:
            rebuilt.append(True)
            build_cache(seq, tmp_path / "c", crop_size=16, margin=0.5, boxes=given_boxes(),
                        proxies=False)
        return meta

    monkeypatch.setattr(cache_mod, "_read_meta", meta_then_rebuild)
    with pytest.raises(UserInputError, match="rebuilt while it was being opened"):
        CropCache.open(tmp_path / "c", seq)
    assert CropCache.open(tmp_path / "c", seq).margin == 0.5  # once complete, it opens
    # rebuilt to margin 0.2 while its files were opened, and back to 0.5 before the re-check:
    # meta.json says what it said, but the files opened are the 0.2 build's
    calls, building = [], []

    def rebuild_twice(folder):
        if building:  # the builds' own reads
            return real(folder)
        calls.append(True)
        building.append(True)
        build_cache(seq, tmp_path / "c", crop_size=16, margin=0.2 if len(calls) == 1 else 0.5,
                    boxes=given_boxes(), proxies=False)
        building.clear()
        return real(folder) if len(calls) != 1 else meta_05

    meta_05 = real(crops_dir(tmp_path / "c", seq))
    monkeypatch.setattr(cache_mod, "_read_meta", rebuild_twice)
    with pytest.raises(UserInputError, match="rebuilt while it was being opened"):
        CropCache.open(tmp_path / "c", seq)


def test_media_reads_the_old_crops_while_a_rebuild_replaces_them(seq, tmp_path):
    """MediaAccess as the Session uses it: crops at the attached cache's contract keep coming
    from the cache it opened while a build for another checkpoint's contract runs, then from
    the new one once it is attached."""
    from mcss_studio.core.media import MediaAccess

    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    media = MediaAccess(seq, tmp_path / "c")
    media.attach_caches()  # no crop read yet: nothing mapped by a lazy reader
    boxes = media.crop_cache.boxes
    before = np.stack([direct_crop(videos()[c][7], boxes[c, 7], 16) for c in range(2)])
    build_cache(seq, tmp_path / "c", crop_size=24, boxes=given_boxes(), proxies=False)
    during, _ = media.crops(7, 16, 0.2)
    np.testing.assert_array_equal(during, before)
    media.attach_caches()
    assert media.crops_cached_for(24, 0.2) and media.crops(7, 24, 0.2)[0].shape == (2, 24, 24, 3)


def test_a_frame_is_read_from_one_cache_even_if_another_is_attached_midway(seq, tmp_path):
    """The inference thread reads a frame's views while the UI thread attaches the cache a
    finished build made: every view of that frame comes from the cache it started with."""
    from mcss_studio.core.media import MediaAccess

    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    media = MediaAccess(seq, tmp_path / "c")
    media.attach_caches()
    old = media.crop_cache
    expected = np.stack([direct_crop(videos()[c][3], old.boxes[c, 3], 16) for c in range(2)])
    build_cache(seq, tmp_path / "c", crop_size=24, boxes=given_boxes(), proxies=False)
    read = old.get

    def get_then_attach(c: int, t: int) -> np.ndarray:
        media.attach_caches()  # what Session._caches_built does on the UI thread
        return read(c, t)

    old.get = get_then_attach
    crops, _ = media.crops(3, 16, 0.2)
    np.testing.assert_array_equal(crops, expected)
    assert media.crop_cache.crop_size == 24


def test_a_rebuild_writes_new_files_never_the_ones_readers_hold(tmp_path):
    """Files are replaced, not truncated in place: a truncated mapped file would kill a reader
    with SIGBUS; a replaced one stays readable under its old inode."""
    from mcss_studio.core.cache import _allocate

    path = tmp_path / "0.u8"
    path.write_bytes(bytes(range(200)))
    held = np.memmap(path, np.uint8, "r")
    inode = path.stat().st_ino
    _allocate(((path, 50),))
    assert path.stat().st_ino != inode and path.stat().st_size == 50
    assert held[199] == 199
