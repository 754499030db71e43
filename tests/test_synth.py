"""Synthetic dataset generator: layout, determinism, geometry vs pixels, presets, bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import tomllib

from mcss_studio.core.calibration import load_calibration
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.synth import ACTIONS, PRESETS, generate, plan_dataset
from mcss_studio.core.synth.body import build_shapes
from mcss_studio.core.synth.generate import build_views, make_subject, sequence_joints
from mcss_studio.core.synth.render import render_frame


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "tiny", "tiny", seed=0)


def test_tiny_layout_matches_formats(tiny: Path) -> None:
    manifest = json.loads((tiny / "manifest.json").read_text())
    assert manifest["format"] == "mcss-multiview-dataset" and manifest["version"] == 1
    names = [s["name"] for s in manifest["sequences"]]
    assert names == ["S1_walk_1", "S1_wave_1", "S9_walk_1", "S9_wave_1"]
    assert manifest["splits"] == {"train": ["S1"], "test": ["S9"], "labelled": ["S1"]}
    frames = round(PRESETS["tiny"].seconds * PRESETS["tiny"].fps)
    for entry in manifest["sequences"]:
        seq = tiny / entry["path"]
        meta = tomllib.loads((seq / "sequence.toml").read_text())
        assert meta == {
            "name": entry["name"],
            "subject": entry["subject"],
            "action": entry["action"],
        }
        cams = load_calibration(seq / "calibration.json")
        assert sorted(cams) == ["cam0", "cam1", "cam2", "cam3"]
        joints = np.load(seq / "joints3d.npz")["joints3d"]
        assert joints.shape == (frames, 17, 3) and np.isfinite(joints).all()
        with np.load(seq / "boxes.npz") as boxes:
            assert boxes["boxes"].shape == (4, frames, 4)
            assert list(boxes["cameras"]) == ["cam0", "cam1", "cam2", "cam3"]
        for name, cal in cams.items():
            assert (cal.width, cal.height) == (128, 96)
            video = _decode(seq / f"{name}.mp4")
            assert video.shape == (frames, 96, 128, 3)
    assert not list(tiny.parent.glob("*.tmp-*"))


def test_same_seed_same_bytes_other_seed_differs(tiny: Path, tmp_path: Path) -> None:
    again = _files(generate(tmp_path / "again", "tiny", seed=0))
    first = _files(tiny)
    assert again.keys() == first.keys()
    assert [k for k in first if first[k] != again[k]] == []
    other = _files(generate(tmp_path / "other", "tiny", seed=1))
    assert other["S1_walk_1/cam0.mp4"] != first["S1_walk_1/cam0.mp4"]
    assert other["S1_walk_1/joints3d.npz"] != first["S1_walk_1/joints3d.npz"]


def test_ground_truth_lands_on_the_rendered_body(tiny: Path) -> None:
    """Projected joints hit body pixels (not background) and lie inside the written boxes."""
    plan = plan_dataset("tiny", seed=0)
    backgrounds = {v.name: v.background for v in build_views(plan)}
    body_diffs, bg_diffs = [], []
    for seq in plan.sequences:
        folder = tiny / seq.name
        cams = load_calibration(folder / "calibration.json")
        joints = np.load(folder / "joints3d.npz")["joints3d"]
        with np.load(folder / "boxes.npz") as data:
            boxes, order = data["boxes"], list(data["cameras"])
        for c, name in enumerate(order):
            uv = cams[name].project(joints)  # (T,17,2)
            box = boxes[c]
            assert np.isfinite(box).all()
            assert (uv[..., 0] >= box[:, None, 0] - 1).all() and (
                uv[..., 0] <= box[:, None, 2] + 1
            ).all()
            assert (uv[..., 1] >= box[:, None, 1] - 1).all() and (
                uv[..., 1] <= box[:, None, 3] + 1
            ).all()
            video = _decode(folder / f"{name}.mp4").astype(np.float64)
            diff = np.abs(video - backgrounds[name][None]).mean(-1)  # (T,H,W)
            px = np.clip(np.round(uv).astype(int), 0, [127, 95])
            t_index = np.arange(len(joints))[:, None]
            body_diffs.append(diff[t_index, px[..., 1], px[..., 0]].ravel())
            outside = np.ones(diff.shape, dtype=bool)
            for t, (x0, y0, x1, y1) in enumerate(box.astype(int)):
                outside[t, max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2] = False
            bg_diffs.append(diff[outside])
    body, bg = np.concatenate(body_diffs), np.concatenate(bg_diffs)
    assert np.median(bg) < 4.0  # background pixels are the cached background plus noise
    assert np.median(body) > 20.0 and np.mean(body > 8.0) > 0.85


@pytest.mark.parametrize("size", [(160, 128)])
def test_every_joint_projects_into_the_body_mask(size: tuple[int, int]) -> None:
    plan = plan_dataset("tiny", seed=3, size=size)
    views = build_views(plan)
    for seq in plan.sequences:
        subject = make_subject(plan.seed, seq.subject)
        joints = sequence_joints(plan, seq, subject)
        shapes = build_shapes(joints, subject.skeleton, subject.look.girth)
        for t in (0, seq.frames - 1):
            for view in views:
                frame = render_frame(view, shapes, t, subject.look, joints[t], t)
                uv = np.round(view.calibration.project(joints[t])).astype(int)
                inside = (
                    (uv[:, 0] >= 0) & (uv[:, 0] < size[0]) & (uv[:, 1] >= 0) & (uv[:, 1] < size[1])
                )
                assert inside.all(), "the rig frames the whole capture volume"
                # a 3x3 neighbourhood absorbs rounding of sub-pixel limbs
                padded = np.pad(frame.mask, 1)
                hits = [padded[v : v + 3, u : u + 3].any() for u, v in uv]
                assert all(hits), (seq.name, view.name, t, np.flatnonzero(~np.array(hits)))


def test_views_differ_but_a_subject_keeps_its_look() -> None:
    """Same instant from two cameras differs a lot; distant frames of one take share background
    and clothing (what makes temporal negatives hard)."""
    plan = plan_dataset("tiny", seed=0, size=(128, 128))
    views = build_views(plan)
    seq = plan.sequences[0]
    subject = make_subject(plan.seed, seq.subject)
    joints = sequence_joints(plan, seq, subject)
    shapes = build_shapes(joints, subject.skeleton, subject.look.girth)
    first, last = 0, seq.frames - 1
    a = render_frame(views[0], shapes, first, subject.look, joints[first], 0)
    b = render_frame(views[1], shapes, first, subject.look, joints[first], 0)
    assert np.abs(a.image.astype(float) - b.image).mean() > 20.0
    later = render_frame(views[0], shapes, last, subject.look, joints[last], 1)
    assert np.abs(joints[last] - joints[first]).max() > 100.0  # the pose did change
    background = ~(a.mask | later.mask)
    assert np.abs(a.image.astype(float) - later.image)[background].mean() < 5.0
    colour_a = np.median(a.image[a.mask], axis=0)
    colour_later = np.median(later.image[later.mask], axis=0)
    assert np.abs(colour_a - colour_later).max() < 40.0


def test_preset_shapes() -> None:
    tiny = plan_dataset("tiny")
    assert (tiny.cameras, tiny.size, tiny.subjects) == (4, (128, 96), ["S1", "S9"])
    demo = plan_dataset("demo")
    assert demo.cameras >= 4 and demo.size == (384, 288)
    assert 200 <= demo.frames_per_camera <= 1000
    bench = plan_dataset("benchmark")
    assert bench.cameras == 4
    assert bench.subjects == ["S1", "S5", "S6", "S7", "S8", "S9", "S11"]
    assert bench.splits == {
        "train": ["S1", "S5", "S6", "S7", "S8"],
        "test": ["S9", "S11"],
        "labelled": ["S1"],
    }
    assert {s.action for s in bench.sequences} == set(ACTIONS) and len(ACTIONS) >= 8
    assert bench.frames_per_camera >= 2000
    wide = plan_dataset("tiny", cameras=12, fps=50, size=(64, 80))
    assert (wide.cameras, wide.size) == (12, (64, 80))
    assert wide.sequences[0].frames == 2 * tiny.sequences[0].frames


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"preset": "huge"}, "--preset: unknown preset 'huge'"),
        ({"cameras": 0}, "--cameras: must be an integer from 1 to 12, got 0"),
        ({"cameras": 13}, "--cameras: must be an integer from 1 to 12, got 13"),
        ({"fps": 10}, "--fps: must be from 25 to 50"),
        ({"size": (95, 96)}, "--size: width and height must be even"),
        ({"size": (32, 32)}, "--size: width and height must be even and from 64"),
        ({"seed": -1}, "--seed"),
        ({"workers": -1}, "--workers: must be 0"),
    ],
)
def test_bad_arguments_are_refused_before_writing(
    tmp_path: Path, kwargs: dict, needle: str
) -> None:
    with pytest.raises(UserInputError) as err:
        generate(tmp_path / "out", **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_or_occupied_out(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(UserInputError, match="cannot write the dataset here"):
        generate(blocker / "out", "tiny")
    with pytest.raises(UserInputError, match="exists and is not a folder"):
        generate(blocker, "tiny")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(UserInputError, match="already exists and is not empty"):
        generate(occupied, "tiny")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "occupied"]


def test_interrupted_run_leaves_no_half_dataset(tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def progress(done: int, total: int) -> None:
        assert 0 <= done <= total
        if done >= total // 2:
            raise Stop

    with pytest.raises(Stop):
        generate(tmp_path / "out", "tiny", progress=progress)
    assert list(tmp_path.iterdir()) == []
    calls: list[tuple[int, int]] = []
    generate(tmp_path / "out", "tiny", progress=lambda d, t: calls.append((d, t)))
    assert calls[0][0] == 0 and calls[-1][0] == calls[-1][1] == plan_dataset("tiny").total_images


def test_data_layer_opens_the_dataset(tiny: Path) -> None:
    """The generator writes what the generic loaders read (manifest, videos, calibration, 3D)."""
    from mcss_studio.core.sources.dataset import open_dataset

    dataset = open_dataset(tiny)
    assert dataset.names == ["S1_walk_1", "S1_wave_1", "S9_walk_1", "S9_wave_1"]
    assert dataset.splits["labelled"] == ["S1"]
    seq = dataset.sequences[2].open()
    assert (seq.subject, seq.action, seq.num_frames) == ("S9", "walk", 12)
    assert seq.camera_names == ["cam0", "cam1", "cam2", "cam3"] and seq.is_calibrated
    assert seq.joints3d.shape == (12, 17, 3) and seq.boxes.shape == (4, 12, 4)
    assert seq.frame(3, 11).shape == (96, 128, 3)


def test_twelve_cameras_all_see_the_person(tmp_path: Path) -> None:
    out = generate(tmp_path / "wide", "tiny", cameras=12, size=(64, 64))
    seq = out / "S9_wave_1"
    cams = load_calibration(seq / "calibration.json")
    assert len(cams) == 12
    centers = np.array([c.center for c in cams.values()])
    assert np.ptp(centers[:, 2]) > 1000  # different heights
    assert np.ptp(np.linalg.norm(centers[:, :2], axis=1)) > 300  # different distances
    with np.load(seq / "boxes.npz") as data:
        assert data["boxes"].shape == (12, 12, 4) and np.isfinite(data["boxes"]).all()


def test_worker_processes_write_the_same_bytes(tiny: Path, tmp_path: Path) -> None:
    calls: list[int] = []
    pooled = generate(tmp_path / "pooled", "tiny", workers=2, progress=lambda d, t: calls.append(d))
    assert _files(pooled) == _files(tiny)
    assert calls[-1] == plan_dataset("tiny").total_images and calls == sorted(calls)
