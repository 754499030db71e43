"""Every bad input a user can hand to open_frame_source gives a one-line UserInputError."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mcss_studio.core.errors import UserInputError
from mcss_studio.core.video import VideoReader, open_frame_source
from mcss_studio.core.video_writer import VideoWriter
from tests.videofixtures import synthetic_frames, write_image_folder, write_video

T, W, H = 60, 64, 48


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return synthetic_frames(T, W, H, seed=5)


def expect_error(path, *words: str) -> UserInputError:
    with pytest.raises(UserInputError) as info:
        src = open_frame_source(path)
        list(src.iter_frames())  # some problems only show when decoding
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return info.value


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.mp4", "not found")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    expect_error(tmp_path / "empty.mp4", "empty")


def test_text_file_renamed_to_mp4(tmp_path):
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    expect_error(tmp_path / "notes.mp4", "not a readable video")


def test_unsupported_extension(tmp_path):
    (tmp_path / "clip.gif").write_bytes(b"GIF89a")
    expect_error(tmp_path / "clip.gif", "unsupported")


@pytest.mark.parametrize(("name", "codec"), [("zero.avi", "mjpg"), ("zero.mp4", "h264")])
def test_zero_frames(tmp_path, name, codec):
    with VideoWriter(tmp_path / name, 30, W, H, codec=codec):
        pass
    assert (tmp_path / name).stat().st_size > 0
    expect_error(tmp_path / name)


def test_truncated_mp4_is_refused(tmp_path, frames):
    """mp4 keeps its index at the end: a file cut in the middle cannot be indexed at all."""
    path = write_video(tmp_path / "full.mp4", frames, codec="h264", gop=20)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    expect_error(cut, "not a readable video")


@pytest.mark.parametrize(("name", "codec"), [("cut.avi", "mjpg"), ("cut.avi", "xvid")])
def test_truncated_avi_gives_complete_frames_only(tmp_path, frames, name, codec):
    """avi can be read up to the cut: frame_count is the complete frames, all exact."""
    path = write_video(tmp_path / f"full_{name}", frames, codec=codec, gop=10)
    cut = tmp_path / name
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    with open_frame_source(path) as full, VideoReader(cut) as src:
        assert src.truncated
        assert 0 < src.frame_count < T
        sequential = list(src.iter_frames())
        assert len(sequential) == src.frame_count
        for i in np.random.default_rng(0).permutation(src.frame_count):
            assert np.array_equal(src.read(int(i)), sequential[i])
            assert np.array_equal(sequential[i], full.read(int(i)))


def test_corrupted_middle_raises_or_decodes_but_never_hangs(tmp_path, frames):
    """Garbage over the first frames' bytes: a clear error naming the file, no hang."""
    path = write_video(tmp_path / "v.mp4", frames, codec="h264", gop=20)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    data[100:4000] = rng.integers(0, 256, 3900, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    try:
        src = open_frame_source(bad)
        frames_read = list(src.iter_frames())
    except UserInputError as exc:
        assert str(bad) in str(exc)
    else:  # the decoder concealed the damage; what it gives must still be consistent
        assert len(frames_read) == src.frame_count


def test_image_folder_without_images(tmp_path):
    (tmp_path / "cam").mkdir()
    (tmp_path / "cam" / "readme.txt").write_text("no images here")
    expect_error(tmp_path / "cam", "no images")


def test_image_folder_mixed_sizes(tmp_path, frames):
    folder = write_image_folder(tmp_path / "cam", frames[:5])
    small = np.zeros((H // 2, W // 2, 3), np.uint8)
    cv2.imwrite(str(folder / "img5.png"), small)
    err = expect_error(folder, "differs")
    assert "img5.png" in str(err)


def test_image_folder_mixed_sizes_jpeg(tmp_path, frames):
    folder = write_image_folder(tmp_path / "cam", frames[:3], ext=".jpg")
    cv2.imwrite(str(folder / "img3.jpg"), np.zeros((H, W + 2, 3), np.uint8))
    expect_error(folder, "differs")


def test_image_folder_unreadable_image(tmp_path, frames):
    folder = write_image_folder(tmp_path / "cam", frames[:4])
    (folder / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage that is not a png")
    err = expect_error(folder)
    assert "img2.png" in str(err)


def test_image_folder_image_corrupt_after_header(tmp_path, frames):
    """A header that parses but pixel data that does not: error when the frame is read."""
    folder = write_image_folder(tmp_path / "cam", frames[:4])
    good = (folder / "img1.png").read_bytes()
    (folder / "img1.png").write_bytes(good[:40])
    src = open_frame_source(folder)
    with pytest.raises(UserInputError, match="img1.png"):
        src.read(1)


def test_truncated_mkv_gives_complete_frames_only(tmp_path, frames):
    path = write_video(tmp_path / "full.mkv", frames, codec="h264", gop=15, bframes=2)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    with open_frame_source(path) as full, VideoReader(cut) as src:
        assert 0 < src.frame_count < T
        sequential = list(src.iter_frames())
        assert len(sequential) == src.frame_count
        for i in np.random.default_rng(2).permutation(src.frame_count):
            assert np.array_equal(src.read(int(i)), sequential[i])
            assert np.array_equal(sequential[i], full.read(int(i)))
