"""Frame-exact access: random reads equal sequential decoding, for every container and codec."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest

from mcss_studio.core import video, video_index
from mcss_studio.core.video import ImageFolderSource, VideoReader, natural_key, open_frame_source
from mcss_studio.core.video_index import forget_video_indexes
from tests.videofixtures import (
    count_container_opens,
    synthetic_frames,
    write_image_folder,
    write_video,
)

T = 90
W, H = 96, 64

# name -> (file name, codec, gop, bframes)
VIDEO_CASES = {
    "mp4-mp4v": ("v.mp4", "mp4v", 30, None),
    "mp4-h264-gop50-bframes": ("v.mp4", "h264", 50, 3),
    "mkv-h264-gop25-bframes": ("v.mkv", "h264", 25, 2),
    "mov-h264-gop40-bframes": ("v.mov", "h264", 40, 3),
    "avi-mjpg": ("v.avi", "mjpg", None, None),
    "avi-xvid": ("v.avi", "xvid", 30, None),
    "mkv-ffv1": ("v.mkv", "ffv1", None, None),
}
FOLDER_CASES = {"folder-png": ".png", "folder-jpg": ".jpg"}
ALL_CASES = list(VIDEO_CASES) + list(FOLDER_CASES)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return synthetic_frames(T, W, H, seed=3)


@pytest.fixture(scope="module")
def sources(tmp_path_factory, frames) -> dict:
    """Each case's path (written once per module run)."""
    root = tmp_path_factory.mktemp("videos")
    paths = {}
    for name, (fname, codec, gop, bframes) in VIDEO_CASES.items():
        (root / name).mkdir()
        path = root / name / fname
        paths[name] = write_video(path, frames, codec=codec, gop=gop, bframes=bframes)
    for name, ext in FOLDER_CASES.items():
        paths[name] = write_image_folder(root / name, frames, ext=ext)
    return paths


def plain_pyav_decode(path) -> list[np.ndarray]:
    """Reference: the simplest possible sequential decode, independent of VideoReader."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def shuffled_order(n: int, seed: int) -> list[int]:
    """Random order plus the awkward cases: ends, repeats, backward steps, forward scrubs."""
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(n)]
    order += [0, n - 1, n - 1, 0, 0, n // 2, n // 2 - 1, n // 2 - 2, 1, 2, 3, n - 2, n - 1]
    order += [int(i) for i in rng.integers(0, n, 40)]
    return order


@pytest.mark.parametrize("case", list(VIDEO_CASES))
def test_sequential_decode_matches_plain_pyav(sources, case):
    reference = plain_pyav_decode(sources[case])
    with open_frame_source(sources[case]) as src:
        assert src.frame_count == T == len(reference)
        ours = list(src.iter_frames())
    assert len(ours) == T
    for i, (a, b) in enumerate(zip(ours, reference)):
        assert a.dtype == np.uint8 and a.shape == (H, W, 3)
        assert np.array_equal(a, b), f"frame {i} differs from a plain decode"


@pytest.fixture
def faults_forgotten():
    """For tests that inject faults into a reader: what it learnt is not kept for later ones."""
    yield
    forget_video_indexes()


def _open_as(path, remembered: bool):
    """A reader of `path`: one that demuxes it now, or one that takes the remembered index and
    has not opened its container yet."""
    forget_video_indexes()
    if remembered:
        open_frame_source(path).close()
    src = open_frame_source(path)
    if remembered and isinstance(src, VideoReader):
        assert src._opened is None, "a remembered video is opened again before any decode"
    return src


@pytest.mark.parametrize("remembered", [False, True], ids=["demuxed", "remembered"])
@pytest.mark.parametrize("case", ALL_CASES)
def test_random_reads_equal_sequential_frames(sources, frames, case, remembered):
    with _open_as(sources[case], remembered) as src:
        assert (src.width, src.height, src.frame_count) == (W, H, T)
        assert src.fps == pytest.approx(30.0)
        sequential = list(src.iter_frames())
        assert len(sequential) == T
        # the decoded video is close to what was encoded (the frames are the right ones)
        for i in (0, T // 2, T - 1):
            err = np.abs(sequential[i].astype(int) - frames[i].astype(int)).mean()
            assert err < 20, f"frame {i} looks unlike the encoded frame (mean error {err:.1f})"
        for i in shuffled_order(T, seed=hash(case) % 1000):
            got = src.read(i)
            assert got.dtype == np.uint8 and got.shape == (H, W, 3)
            assert np.array_equal(got, sequential[i]), f"read({i}) is not frame {i}"


@pytest.mark.parametrize("case", ["mp4-h264-gop50-bframes", "avi-xvid", "folder-png"])
def test_partial_ranges_and_interleaving(sources, case):
    with open_frame_source(sources[case]) as src:
        sequential = list(src.iter_frames())
        for start, stop in [(0, 1), (T - 1, T), (17, 63), (49, 52), (60, None), (5, 5), (80, 500)]:
            part = list(src.iter_frames(start, stop))
            expected = sequential[start : T if stop is None else stop]
            assert len(part) == len(expected)
            assert all(np.array_equal(a, b) for a, b in zip(part, expected))
            # a read between ranges must not disturb the next range
            assert np.array_equal(src.read(T - 3), sequential[T - 3])


def test_forward_scrubbing_does_not_seek(sources):
    with VideoReader(sources["mp4-h264-gop50-bframes"]) as src:
        assert src.keyframe_indices == [0, 50]
        src.read(10)
        seeks = src.seek_count
        for i in range(11, 70):  # crosses the keyframe at 50 without seeking
            src.read(i)
        assert src.seek_count == seeks
        src.read(5)  # backwards: must seek
        assert src.seek_count == seeks + 1
        src.read(5)  # repeated: served from the last frame
        assert src.seek_count == seeks + 1


def test_far_jump_seeks_to_nearest_keyframe(sources):
    with VideoReader(sources["mp4-h264-gop50-bframes"]) as src:
        reference = plain_pyav_decode(sources["mp4-h264-gop50-bframes"])
        src.read(2)
        before = src.seek_count
        assert np.array_equal(src.read(75), reference[75])
        assert src.seek_count == before + 1


def test_slow_fallback_is_still_exact(sources, faults_forgotten):
    """When timestamps cannot be trusted the reader counts frames from the start."""
    path = sources["mkv-h264-gop25-bframes"]
    reference = plain_pyav_decode(path)
    with VideoReader(path) as src:
        src._go_slow()  # what happens when a decoded timestamp is not in the index
        assert src.slow_mode
        assert src.frame_count == T
        for i in [40, 3, T - 1, 0, 41, 42, 20]:
            assert np.array_equal(src.read(i), reference[i])
        assert len(list(src.iter_frames(85))) == 5


def test_out_of_range_index(sources):
    with open_frame_source(sources["avi-mjpg"]) as src:
        with pytest.raises(IndexError):
            src.read(T)
        with pytest.raises(IndexError):
            src.read(-1)


def test_read_returns_independent_arrays(sources):
    with open_frame_source(sources["mp4-mp4v"]) as src:
        a = src.read(7)
        a[:] = 0
        assert src.read(7).any()


def test_image_folder_natural_order(tmp_path, frames):
    folder = write_image_folder(tmp_path / "cam", frames[:12], ext=".png", pattern="f{}")
    (folder / "notes.txt").write_text("ignored")
    src = ImageFolderSource(folder)
    assert [f.name for f in src.files][:3] == ["f0.png", "f1.png", "f2.png"]
    assert src.files[10].name == "f10.png"
    for i in (11, 2, 10):
        assert np.array_equal(src.read(i), frames[i])  # png is lossless: exact pixels
    assert sorted(["a10", "a9", "a100", "b1"], key=natural_key) == ["a9", "a10", "a100", "b1"]


def test_image_folder_fps_override(tmp_path, frames):
    folder = write_image_folder(tmp_path / "cam", frames[:3], ext=".bmp")
    assert open_frame_source(folder, fps=50).fps == 50.0
    assert open_frame_source(folder).frame_count == 3


def test_reads_interleaved_with_an_iteration_stay_exact(sources):
    path = sources["mp4-h264-gop50-bframes"]
    reference = plain_pyav_decode(path)
    with VideoReader(path) as src:
        it = src.iter_frames(10, 70)
        for k, frame in enumerate(it):
            assert np.array_equal(frame, reference[10 + k])
            if k % 7 == 3:  # jump elsewhere while the iteration is suspended
                assert np.array_equal(src.read(85 - k), reference[85 - k])
        assert k == 59
        assert not src.slow_mode


class _SeekOvershootingContainer:
    """Wraps a PyAV container; seeks to one keyframe land on a later one (like buggy demuxers)."""

    def __init__(self, inner, redirect: dict[int, int]) -> None:
        self._inner = inner
        self._redirect = redirect

    def seek(self, offset, **kwargs):
        return self._inner.seek(self._redirect.get(offset, offset), **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_overshooting_seek_steps_back_a_keyframe(sources, faults_forgotten):
    path = sources["mkv-h264-gop25-bframes"]
    reference = plain_pyav_decode(path)
    with VideoReader(path) as src:
        assert src.keyframe_indices == [0, 25, 50, 75]
        key_pts = [src._frame_pts[k] for k in src.keyframe_indices]
        src._container = _SeekOvershootingContainer(src._container, {key_pts[2]: key_pts[3]})
        before = src.seek_count
        assert np.array_equal(src.read(60), reference[60])  # lands at 75, steps back to 25
        assert src.seek_count == before + 2
        assert not src.slow_mode
        assert np.array_equal(src.read(55), reference[55])


class _ShiftedTimestampContainer:
    """Wraps a PyAV container; decoded frames carry timestamps that are not in the index."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def decode(self, *args, **kwargs):
        for frame in self._inner.decode(*args, **kwargs):
            frame.pts = frame.pts + 1
            yield frame

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_inconsistent_timestamps_switch_to_the_slow_exact_path(sources, faults_forgotten):
    path = sources["mkv-h264-gop25-bframes"]
    reference = plain_pyav_decode(path)
    with VideoReader(path) as src:
        src._container = _ShiftedTimestampContainer(src._container)
        assert np.array_equal(src.read(40), reference[40])
        assert src.slow_mode and src.frame_count == T
        for i in (41, 3, T - 1):
            assert np.array_equal(src.read(i), reference[i])


def test_iter_frames_decodes_sequentially_with_one_seek(sources):
    with VideoReader(sources["mkv-h264-gop25-bframes"]) as src:
        assert sum(1 for _ in src.iter_frames(30)) == T - 30
        assert src.seek_count == 1


# -- the remembered stream index -----------------------------------------------------------------
def test_a_remembered_video_opens_its_container_only_to_decode(sources, monkeypatch):
    path = sources["mp4-h264-gop50-bframes"]
    reference = plain_pyav_decode(path)
    forget_video_indexes()
    first = VideoReader(path)
    facts = (first.width, first.height, first.fps, first.frame_count, first.keyframe_indices)
    first.close()
    opened = count_container_opens(monkeypatch)
    with VideoReader(path) as again:
        assert opened == []
        assert (again.width, again.height, again.fps, again.frame_count,
                again.keyframe_indices) == facts
        assert np.array_equal(again.read(60), reference[60])
        assert len(opened) == 1


def test_a_changed_file_is_indexed_again(tmp_path, frames, monkeypatch):
    """Same path, size, modification time and inode, one byte different near the end (where
    an mp4 keeps its index): the remembered index is not used."""
    path = write_video(tmp_path / "v.mp4", frames, codec="h264", gop=50, bframes=3)
    forget_video_indexes()
    VideoReader(path).close()
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(st.st_size - 5)
        last = fh.read(1)
        fh.seek(st.st_size - 5)
        fh.write(bytes([last[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    opened = count_container_opens(monkeypatch)
    try:
        VideoReader(path).close()
    except video.UserInputError:
        pass  # the flipped byte may make the file unreadable: what counts is that it was read
    assert len(opened) == 1


def test_a_video_found_slow_is_remembered_slow(sources, faults_forgotten):
    path = sources["mkv-h264-gop25-bframes"]
    forget_video_indexes()
    with VideoReader(path) as src:
        src._go_slow()
    with VideoReader(path) as again:
        assert again.slow_mode and again._opened is None and again.frame_count == T
        assert np.array_equal(again.read(41), plain_pyav_decode(path)[41])


def test_remembered_indexes_are_bounded_by_frames(sources, monkeypatch):
    forget_video_indexes()
    monkeypatch.setattr(video_index.IndexMemo, "MAX_FRAMES", 2 * T)
    names = ["mp4-mp4v", "mkv-ffv1", "avi-mjpg"]
    for name in names:
        VideoReader(sources[name]).close()
    opened = count_container_opens(monkeypatch)
    VideoReader(sources[names[2]]).close()
    VideoReader(sources[names[1]]).close()
    assert opened == []  # the two newest are kept
    VideoReader(sources[names[0]]).close()
    assert len(opened) == 1  # the oldest was dropped when the third came in
    forget_video_indexes()


def test_indexes_kept_in_a_folder_serve_a_fresh_process(sources, tmp_path, monkeypatch):
    names = ["mp4-h264-gop50-bframes", "mkv-h264-gop25-bframes", "avi-xvid"]
    references = {n: plain_pyav_decode(sources[n]) for n in names}
    forget_video_indexes()
    for name in names:
        VideoReader(sources[name]).close()
    video_index.save_video_indexes(tmp_path)
    forget_video_indexes()  # as a new process
    assert video_index.remember_video_indexes(tmp_path) == 3
    opened = count_container_opens(monkeypatch)
    for name in names:
        with VideoReader(sources[name]) as src:
            assert src._opened is None and src.frame_count == T
            assert np.array_equal(src.read(T - 7), references[name][T - 7])
    assert len(opened) == 3  # each opened once, to decode
    forget_video_indexes()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "key beyond the frames"])
def test_a_damaged_index_file_is_ignored(sources, tmp_path, damage):
    forget_video_indexes()
    VideoReader(sources["mp4-mp4v"]).close()
    if damage == "key beyond the frames":
        key, facts = video_index.INDEX_MEMO.items()[0]
        bad = video_index.StreamIndex(**{**facts.__dict__, "key_indices": np.array([0, T])})
        video_index.INDEX_MEMO.put(key, bad)
    video_index.save_video_indexes(tmp_path)
    path = tmp_path / video_index.FILE_NAME
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-40])
    elif damage == "garbage":
        path.write_bytes(b"PK\x03\x04 not an index at all")
    forget_video_indexes()
    assert video_index.remember_video_indexes(tmp_path) == 0
    with VideoReader(sources["mp4-mp4v"]) as src:  # demuxed again, correct
        assert src._opened is not None and src.keyframe_indices == [0, 30, 60]
    forget_video_indexes()
