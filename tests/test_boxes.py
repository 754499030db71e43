"""Person boxes: GT projection, background detector, box files and their errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mcss_studio.core.boxes import (
    GT_PAD_FRACTION,
    compute_boxes,
    compute_boxes_with_method,
    load_boxes_file,
    save_boxes_csv,
    save_boxes_npz,
    smooth_and_fill,
    square_crop_box,
)
from mcss_studio.core.camera import Calibration
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.sequence import CameraView, MultiviewSequence


class ArraySource:
    """In-memory FrameSource over a (T, H, W, 3) uint8 array."""

    def __init__(self, frames: np.ndarray, path: Path) -> None:
        self.frames = frames
        self.path = path
        self.frame_count, self.height, self.width = frames.shape[:3]
        self.fps = 25.0

    def read(self, index: int) -> np.ndarray:
        return self.frames[index].copy()

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        for i in range(start, self.frame_count if stop is None else stop):
            yield self.frames[i].copy()

    def close(self) -> None:
        pass


def make_seq(tmp_path: Path, videos: list[np.ndarray], **kw) -> MultiviewSequence:
    cams = [
        CameraView(name=f"cam{i}", source=ArraySource(v, tmp_path / f"cam{i}.mp4"))
        for i, v in enumerate(videos)
    ]
    T = min(v.shape[0] for v in videos)
    return MultiviewSequence(path=tmp_path, name="seq", cameras=cams, num_frames=T, fps=25.0, **kw)


def blank(T: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    return np.zeros((T, h, w, 3), np.uint8)


def cam_looking_at_origin(dist_mm: float = 4000.0) -> Calibration:
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    return Calibration(K=K, R=np.eye(3), t=np.array([0.0, 0.0, dist_mm]), width=640, height=480)


# -- GT boxes ------------------------------------------------------------------------------
def test_gt_boxes_enclose_projected_joints_with_padding(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    joints = rng.uniform(-600, 600, size=(5, 17, 3))
    cal = cam_looking_at_origin()
    seq = make_seq(tmp_path, [blank(5, 480, 640)], joints3d=joints)
    seq.cameras[0].calibration = cal
    boxes, method = compute_boxes_with_method(seq)
    assert method == "gt" and boxes.shape == (1, 5, 4)
    uv = cal.project(joints)
    lo, hi = uv.min(axis=1), uv.max(axis=1)
    b = boxes[0]
    assert (b[:, 0] <= lo[:, 0]).all() and (b[:, 1] <= lo[:, 1]).all()
    assert (b[:, 2] >= hi[:, 0]).all() and (b[:, 3] >= hi[:, 1]).all()
    pad = GT_PAD_FRACTION * np.maximum(hi[:, 0] - lo[:, 0], hi[:, 1] - lo[:, 1])
    np.testing.assert_allclose(b[:, 0], np.maximum(lo[:, 0] - pad, 0))
    np.testing.assert_allclose(b[:, 3], np.minimum(hi[:, 1] + pad, 480))


def test_gt_boxes_clip_to_image_and_drop_people_behind_camera(tmp_path: Path) -> None:
    joints = np.zeros((2, 17, 3))
    joints[0, :, 0] = np.linspace(-5000, 0, 17)  # runs off the left edge
    joints[1, :, 2] = -9000  # behind the camera
    seq = make_seq(tmp_path, [blank(2, 480, 640)], joints3d=joints)
    seq.cameras[0].calibration = cam_looking_at_origin()
    boxes = compute_boxes(seq, "gt")
    assert boxes[0, 0, 0] == 0 and boxes[0, 0, 2] <= 640
    assert np.isnan(boxes[0, 1]).all()


# -- background detector -------------------------------------------------------------------
def test_background_detector_finds_moving_blob(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    T, h, w = 40, 120, 160
    background = rng.integers(40, 200, size=(h, w, 3), dtype=np.uint8)
    video = np.repeat(background[None], T, axis=0)
    truth = np.zeros((T, 4))
    for t in range(T):
        x0, y0 = 10 + 2 * t, 20 + t // 2
        video[t, y0 : y0 + 50, x0 : x0 + 24] = (255, 0, 255)
        truth[t] = (x0, y0, x0 + 24, y0 + 50)
    seq = make_seq(tmp_path, [video])
    calls = []
    boxes, method = compute_boxes_with_method(seq, "background",
                                              progress=lambda d, n: calls.append((d, n)))
    assert method == "background"
    assert calls[-1] == (T, T)
    err = np.abs(boxes[0] - truth)
    assert err.max() <= 3.0, err.max()


def test_smooth_and_fill_interpolates_gaps() -> None:
    raw = np.array([[0, 0, 10, 10], [np.nan] * 4, [4, 4, 14, 14], [np.nan] * 4], float)
    out = smooth_and_fill(raw, window=1)
    np.testing.assert_allclose(out[1], [2, 2, 12, 12])
    np.testing.assert_allclose(out[3], [4, 4, 14, 14])
    assert np.isnan(smooth_and_fill(np.full((3, 4), np.nan))).all()


def test_auto_prefers_file_then_full_for_tiny_sequences(tmp_path: Path) -> None:
    given = np.tile([1.0, 2.0, 30.0, 40.0], (1, 12, 1))
    seq = make_seq(tmp_path, [blank()], boxes=given)
    boxes, method = compute_boxes_with_method(seq)
    assert method == "file" and np.array_equal(boxes, given)
    tiny = make_seq(tmp_path, [blank(3)])
    boxes, method = compute_boxes_with_method(tiny)
    assert method == "full"
    assert np.array_equal(boxes[0, 0], [0, 0, 64, 48])
    with pytest.raises(UserInputError):
        compute_boxes(tiny, "gt")
    with pytest.raises(UserInputError):
        compute_boxes(tiny, "nonsense")


def test_fast_area_resize_close_to_inter_area() -> None:
    import cv2

    from mcss_studio.core.imageops import fast_area_resize

    rng = np.random.default_rng(2)
    img = cv2.GaussianBlur(rng.integers(0, 256, (240, 400, 3), dtype=np.uint8), (0, 0), 6)
    out = fast_area_resize(img, (70, 42))
    ref = cv2.resize(img, (70, 42), interpolation=cv2.INTER_AREA)
    assert out.shape == ref.shape and np.abs(out.astype(int) - ref).max() <= 3
    half = cv2.resize(img, (200, 120), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(fast_area_resize(img, (200, 120)), half)


def test_square_crop_box() -> None:
    sq = square_crop_box([10, 20, 30, 60], margin=0.5)
    np.testing.assert_allclose(sq, [-10, 10, 50, 70])  # centre (20, 40), side 40 * 1.5
    missing = square_crop_box([np.nan] * 4, 0.2, width=100, height=50)
    np.testing.assert_allclose(missing, [25, 0, 75, 50])


# -- box files -----------------------------------------------------------------------------
NAMES = ["left", "right"]


def sample_boxes() -> np.ndarray:
    b = np.full((2, 5, 4), np.nan)
    b[0, :3] = [[1, 2, 30, 40], [2.5, 3, 31, 41], [3, 4, 32, 42]]
    b[1, 4] = [5, 6, 7, 8]
    return b


@pytest.mark.parametrize("ext", ["npz", "csv"])
def test_box_file_round_trip(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"boxes.{ext}"
    (save_boxes_npz if ext == "npz" else save_boxes_csv)(path, sample_boxes(), NAMES)
    loaded = load_boxes_file(path, NAMES, 5)
    np.testing.assert_array_equal(loaded, sample_boxes())
    swapped = load_boxes_file(path, NAMES[::-1], 6)  # other order, longer sequence
    np.testing.assert_array_equal(swapped[1, :5], sample_boxes()[0])
    assert np.isnan(swapped[:, 5]).all()
    assert not list(tmp_path.glob("*.tmp"))


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"boxes": np.zeros((2, 5))}, "needs arrays"),
        ({"boxes": np.zeros((2, 5, 3)), "cameras": np.array(NAMES)}, "shape"),
        ({"boxes": np.zeros((2, 9, 4)), "cameras": np.array(NAMES)}, "9 frames"),
        ({"boxes": np.zeros((2, 5, 4)), "cameras": np.array(["left", "top"])}, "unknown camera"),
        ({"boxes": np.zeros((2, 5, 4)), "cameras": np.array(["left", "left"])}, "duplicate"),
        ({"boxes": np.full((2, 5, 4), "a"), "cameras": np.array(NAMES)}, "numeric"),
    ],
)
def test_malformed_npz(tmp_path: Path, arrays: dict, message: str) -> None:
    path = write_npz(tmp_path / "boxes.npz", **arrays)
    with pytest.raises(UserInputError, match=message) as e:
        load_boxes_file(path, NAMES, 5)
    assert "boxes.npz" in str(e.value) and "\n" not in str(e.value)


def test_npz_value_errors(tmp_path: Path) -> None:
    b = np.zeros((2, 5, 4))
    b[1, 2] = [10, 0, 5, 5]
    with pytest.raises(UserInputError, match="camera right frame 2: x1 < x0"):
        load_boxes_file(write_npz(tmp_path / "boxes.npz", boxes=b, cameras=NAMES), NAMES, 5)
    b[1, 2] = [0, 0, np.inf, 5]
    with pytest.raises(UserInputError, match="infinite"):
        load_boxes_file(write_npz(tmp_path / "boxes.npz", boxes=b, cameras=NAMES), NAMES, 5)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserInputError, match="npz"):
        load_boxes_file(tmp_path / "junk.npz", NAMES, 5)


@pytest.mark.parametrize(
    "text, message",
    [
        ("cam,frame,x0,y0,x1,y1\n", "header"),
        ("", "header"),
        ("camera,frame,x0,y0,x1,y1\nleft,0,1,2,3\n", "line 2: expected 6 columns"),
        ("camera,frame,x0,y0,x1,y1\ntop,0,1,2,3,4\n", "line 2: unknown camera 'top'"),
        ("camera,frame,x0,y0,x1,y1\nleft,0,1,2,3,4\nleft,5,1,2,3,4\n", "line 3: frame 5 out"),
        ("camera,frame,x0,y0,x1,y1\nleft,-1,1,2,3,4\n", "frame -1 out of range"),
        ("camera,frame,x0,y0,x1,y1\nleft,0,1,abc,3,4\n", "line 2: non-numeric"),
        ("camera,frame,x0,y0,x1,y1\nleft,1.5,1,2,3,4\n", "line 2: non-numeric"),
        ("camera,frame,x0,y0,x1,y1\nleft,0,1,2,3,4\nleft,0,1,2,3,4\n", "repeats line 2"),
        ("camera,frame,x0,y0,x1,y1\nright,3,1,2,3,nan\n", "line 2: some coordinates missing"),
        ("camera,frame,x0,y0,x1,y1\nright,3,1,9,3,4\n", "line 2: x1 < x0 or y1 < y0"),
    ],
)
def test_malformed_csv(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "boxes.csv"
    path.write_text(text)
    with pytest.raises(UserInputError, match=message) as e:
        load_boxes_file(path, NAMES, 5)
    assert str(e.value).startswith(str(path))


def test_box_file_missing_or_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not found"):
        load_boxes_file(tmp_path / "boxes.csv", NAMES, 5)
    (tmp_path / "boxes.txt").write_text("x")
    with pytest.raises(UserInputError, match=".npz or .csv"):
        load_boxes_file(tmp_path / "boxes.txt", NAMES, 5)
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(UserInputError, match="UTF-8"):
        load_boxes_file(tmp_path / "bin.csv", NAMES, 5)
