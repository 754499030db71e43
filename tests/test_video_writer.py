"""VideoWriter: deterministic bytes, exact keyframe spacing, B-frames, refusals, atomic files."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from mcss_studio.core.errors import UserInputError
from mcss_studio.core.video import open_frame_source
from mcss_studio.core.video_writer import VideoWriter
from tests.videofixtures import synthetic_frames, write_video

T, W, H = 40, 64, 48


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return synthetic_frames(T, W, H, seed=7)


def packets(path) -> list[av.Packet]:
    with av.open(str(path)) as c:
        return [p for p in c.demux(video=0) if p.size]


@pytest.mark.parametrize(
    ("name", "codec"),
    [("a.mp4", "h264"), ("a.mkv", "h264"), ("a.mp4", "mp4v"), ("a.avi", "xvid"),
     ("a.avi", "mjpg"), ("a.mkv", "ffv1")],
)
def test_same_frames_give_same_bytes(tmp_path, frames, name, codec):
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    a = write_video(tmp_path / "1" / name, frames, codec=codec, gop=10, bframes=0)
    b = write_video(tmp_path / "2" / name, frames, codec=codec, gop=10, bframes=0)
    assert a.read_bytes() == b.read_bytes()
    with open_frame_source(a) as src:
        assert src.frame_count == T and (src.width, src.height) == (W, H)


def test_h264_gop_is_exact_and_bframes_are_used(tmp_path, frames):
    path = write_video(tmp_path / "v.mp4", frames, codec="h264", gop=16, bframes=2)
    pk = packets(path)
    assert len(pk) == T
    keys = sorted(p.pts for p in pk if p.is_keyframe)
    all_pts = sorted(p.pts for p in pk)
    assert [all_pts.index(k) for k in keys] == [0, 16, 32]
    # B-frames: decode order differs from presentation order
    assert [p.pts for p in pk] != all_pts
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"


def test_no_bframes_means_decode_order_is_display_order(tmp_path, frames):
    path = write_video(tmp_path / "v.mp4", frames, codec="h264", gop=8, bframes=0)
    pts = [p.pts for p in packets(path)]
    assert pts == sorted(pts)


def test_xvid_fourcc_and_mjpeg_intra(tmp_path, frames):
    xvid = write_video(tmp_path / "x.avi", frames, codec="xvid")
    with av.open(str(xvid)) as c:
        assert c.streams.video[0].codec_tag == "XVID"
    mjpg = write_video(tmp_path / "m.avi", frames, codec="mjpg")
    assert all(p.is_keyframe for p in packets(mjpg))


def test_ffv1_is_lossless(tmp_path, frames):
    path = write_video(tmp_path / "v.mkv", frames, codec="ffv1")
    with open_frame_source(path) as src:
        for i in (0, 13, T - 1):
            assert np.array_equal(src.read(i), frames[i])


def test_quality_changes_output(tmp_path, frames):
    (tmp_path / "hi").mkdir()
    hi = write_video(tmp_path / "hi" / "v.mp4", frames, codec="h264", quality=10)
    lo = write_video(tmp_path / "v.mp4", frames, codec="h264", quality=40)
    assert lo.stat().st_size < hi.stat().st_size


def test_ntsc_rate_is_kept_exactly(tmp_path, frames):
    path = write_video(tmp_path / "v.mp4", frames[:5], fps=30000 / 1001)
    with av.open(str(path)) as c:
        assert c.streams.video[0].average_rate == Fraction(30000, 1001)
    assert open_frame_source(path).fps == pytest.approx(29.97, abs=1e-3)


@pytest.mark.parametrize("codec", ["h264", "mp4v", "mjpg", "xvid"])
def test_odd_size_is_refused_for_yuv420(tmp_path, codec):
    ext = ".avi" if codec in ("mjpg", "xvid") else ".mp4"
    with pytest.raises(UserInputError, match="even"):
        VideoWriter(tmp_path / f"v{ext}", 30, 65, 48, codec=codec)
    assert not list(tmp_path.iterdir())


def test_odd_size_works_for_ffv1(tmp_path):
    frames = synthetic_frames(5, 33, 17)
    path = write_video(tmp_path / "v.mkv", frames, codec="ffv1")
    with open_frame_source(path) as src:
        assert (src.width, src.height, src.frame_count) == (33, 17, 5)
        assert np.array_equal(src.read(4), frames[4])


@pytest.mark.parametrize(
    ("name", "kwargs", "words"),
    [
        ("v.avi", {"codec": "h264"}, "needs a file ending"),
        ("v.mp4", {"codec": "vp9"}, "unknown codec"),
        ("v.mp4", {"gop": 0}, "gop"),
        ("v.mp4", {"bframes": -1}, "bframes"),
    ],
)
def test_bad_arguments(tmp_path, name, kwargs, words):
    with pytest.raises(UserInputError, match=words):
        VideoWriter(tmp_path / name, 30, W, H, **kwargs)


def test_bad_fps_and_size(tmp_path):
    with pytest.raises(UserInputError, match="frame rate"):
        VideoWriter(tmp_path / "v.mp4", 0, W, H)
    with pytest.raises(UserInputError, match="size"):
        VideoWriter(tmp_path / "v.mp4", 30, 0, H)


def test_wrong_frame_shape_is_refused(tmp_path, frames):
    with VideoWriter(tmp_path / "v.mp4", 30, W, H) as vw:
        with pytest.raises(ValueError, match="expected uint8"):
            vw.write(frames[0][:, :-2])
        with pytest.raises(ValueError, match="expected uint8"):
            vw.write(frames[0].astype(np.float32))
        vw.write(frames[0])
    assert open_frame_source(tmp_path / "v.mp4").frame_count == 1


def test_interrupted_writer_leaves_nothing(tmp_path, frames):
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "v.mp4", 30, W, H) as vw:
            for f in frames[:10]:
                vw.write(f)
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_file_appears_only_on_close(tmp_path, frames):
    vw = VideoWriter(tmp_path / "v.mp4", 30, W, H)
    for f in frames[:10]:
        vw.write(f)
    assert not (tmp_path / "v.mp4").exists()
    vw.close()
    vw.close()  # idempotent
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]
    with pytest.raises(ValueError):
        vw.write(frames[0])
