"""Calibration files: every format parsed from text written the way its tool writes it, checked by
projecting known 3D points against cv2.projectPoints of the known cameras; round trips; bad input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from mcss_studio.core import calibration as calib_mod
from mcss_studio.core.calibration import (
    load_calibration,
    match_calibration,
    save_calibration_json,
    save_calibration_toml,
)
from mcss_studio.core.camera import Calibration
from mcss_studio.core.errors import UserInputError
from tests.conftest import look_at

# ----------------------------------------------------------------------------- known cameras


def known_camera(i: int, width: int = 1920, height: int = 1080, dist=None) -> dict:
    """A camera in a ring around the origin, plain numbers (not our Calibration type)."""
    a = 2 * np.pi * i / 5 + 0.3
    centre = np.array([3500 * np.cos(a), 3500 * np.sin(a), 1200.0 + 100 * i])
    R = look_at(centre, np.array([50.0, -20.0, 900.0]))
    K = np.array([[1400.0 + 10 * i, 0, width / 2 + 7.5], [0, 1402.0 + 10 * i, height / 2 - 4.25],
                  [0, 0, 1]])
    if dist is None:
        dist = np.array([-0.21, 0.08, 0.0012, -0.0007, -0.01])
    return {"K": K, "R": R, "t": -R @ centre, "dist": np.asarray(dist, float),
            "size": (width, height)}


def points3d() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform([-400, -400, 100], [400, 400, 1800], size=(40, 3))


def cv_project(cam: dict, X: np.ndarray) -> np.ndarray:
    rvec, _ = cv2.Rodrigues(cam["R"])
    px, _ = cv2.projectPoints(X.reshape(-1, 1, 3), rvec, cam["t"], cam["K"], cam["dist"])
    return px.reshape(-1, 2)


def assert_projects_like(cal: Calibration, cam: dict, tol: float = 1e-6) -> None:
    X = points3d()
    np.testing.assert_allclose(cal.project(X), cv_project(cam, X), atol=tol, rtol=0)
    assert (cal.width, cal.height) == cam["size"]


def floats(values) -> str:
    return "[" + ", ".join(repr(float(v)) for v in np.ravel(values)) + "]"


def assert_user_error(path: Path, match: str, **kwargs) -> None:
    with pytest.raises(UserInputError, match=match) as info:
        load_calibration(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


# ----------------------------------------------------------------------------- TOML


def anipose_toml(cams: dict[str, dict], scale: float = 1.0, ndist: int = 5,
                 metadata: str = "[metadata]\nadjusted = false\nerror = 0.31\n") -> str:
    """TOML as anipose / Pose2Sim write it: Rodrigues rotation, translation in file units."""
    out = []
    for i, (name, cam) in enumerate(cams.items()):
        rvec, _ = cv2.Rodrigues(cam["R"])
        out += [
            f"[cam_{i}]",
            f'name = "{name}"',
            f"size = [ {cam['size'][0]}.0, {cam['size'][1]}.0,]",
            "matrix = [ " + ", ".join(floats(r) for r in cam["K"]) + ",]",
            "distortions = " + floats(cam["dist"][:ndist]),
            "rotation = " + floats(rvec),
            "translation = " + floats(cam["t"] * scale),
            "fisheye = false",
            "",
        ]
    return "\n".join(out) + metadata


def test_anipose_toml_in_mm(tmp_path: Path) -> None:
    cams = {"cam_a": known_camera(0), "cam_b": known_camera(1, 1080, 1920)}
    path = tmp_path / "calibration.toml"
    path.write_text(anipose_toml(cams))
    loaded = load_calibration(path)
    assert list(loaded) == ["cam_a", "cam_b"]
    for name, cam in cams.items():
        assert_projects_like(loaded[name], cam)


def test_pose2sim_toml_in_metres_is_detected(tmp_path: Path) -> None:
    cams = {"int_cam1_img": known_camera(2, dist=[-0.1, 0.02, 0.001, 0.0005, 0.0]),
            "int_cam2_img": known_camera(3, 1080, 1920, dist=[0.05, -0.01, 0.0, 0.0, 0.0])}
    path = tmp_path / "Calib_scene.toml"
    path.write_text(anipose_toml(cams, scale=1e-3, ndist=4))
    loaded = load_calibration(path)
    for name, cam in cams.items():
        assert_projects_like(loaded[name], cam)
        np.testing.assert_allclose(loaded[name].t, cam["t"], rtol=1e-12)


def test_toml_units_key_and_override(tmp_path: Path) -> None:
    cams = {"a": known_camera(0), "b": known_camera(1)}
    in_m = tmp_path / "m.toml"
    # A units key wins over the heuristic: 3.5 km cameras are taken literally as metres.
    in_m.write_text(anipose_toml(cams, metadata='[metadata]\nunits = "m"\n'))
    np.testing.assert_allclose(load_calibration(in_m)["a"].t, cams["a"]["t"] * 1000)
    # The argument wins over everything.
    np.testing.assert_allclose(load_calibration(in_m, units="mm")["a"].t, cams["a"]["t"])
    np.testing.assert_allclose(load_calibration(in_m, units="cm")["a"].t, cams["a"]["t"] * 10)


def test_toml_skips_non_camera_tables_and_uses_key_without_name(tmp_path: Path) -> None:
    cam = known_camera(0)
    text = anipose_toml({"x": cam}).replace('name = "x"\n', "")
    path = tmp_path / "c.toml"
    path.write_text("[capture_volume]\nsize = [1, 2]\n[gui]\ntheme = 'dark'\n" + text)
    loaded = load_calibration(path)
    assert list(loaded) == ["cam_0"]
    assert_projects_like(loaded["cam_0"], cam)


# ----------------------------------------------------------------------------- Qualisys


def qca_camera_xml(serial: str, sensor_cam: dict, viewrotation: int = 0,
                   fov_offset: tuple[int, int] = (0, 0), video_resolution: str | None = None,
                   res_scale: float = 1.0) -> str:
    """A <camera> as QTM exports it, from a camera given in sensor orientation (OpenCV axes).

    QTM stores the camera centre (mm) and the camera-to-world rotation of its own camera axes
    (y up, looking down -z) column by column, and intrinsics in 1/64 pixels of the full sensor.
    ``res_scale`` is delivered-video pixels per sensor pixel (video_resolution / 1080).
    """
    R_qtm = np.diag([1.0, -1.0, -1.0]) @ sensor_cam["R"]  # world -> Qualisys camera
    cam_to_world = R_qtm.T
    centre = -sensor_cam["R"].T @ sensor_cam["t"]
    r = cam_to_world.flatten(order="F")  # column by column: r11 r12 r13 = first column
    names = [f"r{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3)]
    rot_attrs = " ".join(f'{n}="{float(v)!r}"' for n, v in zip(names, r))
    K, d = sensor_cam["K"] / res_scale, sensor_cam["dist"]
    w, h = (round(s / res_scale) for s in sensor_cam["size"])
    left, top = fov_offset
    fov = f'left="{left}" top="{top}" right="{left + w - 1}" bottom="{top + h - 1}"'
    sub = 64.0
    res_attr = f' video_resolution="{video_resolution}"' if video_resolution else ""
    return f"""
    <camera active="1" avg-residual="0.402" model="Miqus Video" point-count="1000"
            serial="{serial}" viewrotation="{viewrotation}"{res_attr}>
      <fov_marker left="0" top="0" right="{w - 1}" bottom="{h - 1}"/>
      <fov_marker_max left="0" top="0" right="{w - 1}" bottom="{h - 1}"/>
      <fov_video {fov}/>
      <fov_video_max left="0" top="0" right="{w - 1}" bottom="{h - 1}"/>
      <transform x="{float(centre[0])!r}" y="{float(centre[1])!r}" z="{float(centre[2])!r}"
        {rot_attrs}/>
      <intrinsic focallength="6.0" sensorMinU="0" sensorMaxU="{w * 64 - 1}" sensorMinV="0"
        sensorMaxV="{h * 64 - 1}" focalLengthU="{float(K[0, 0] * sub)!r}"
        focalLengthV="{float(K[1, 1] * sub)!r}"
        centerPointU="{float((K[0, 2] + left) * sub)!r}"
        centerPointV="{float((K[1, 2] + top) * sub)!r}" skew="0"
        radialDistortion1="{float(d[0])!r}" radialDistortion2="{float(d[1])!r}"
        radialDistortion3="{float(d[4])!r}"
        tangentalDistortion1="{float(d[2])!r}" tangentalDistortion2="{float(d[3])!r}"/>
    </camera>"""


def qca_file(cameras_xml: list[str]) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<calibration source="c:/qtm/calib.qtm" created="2024-03-01 10:00:00" '
        'qtm-version="2023.3" type="regular" wandLength="601.0">\n'
        '  <results std-dev="0.5" min-max-diff="0.1"/>\n  <cameras>'
        + "".join(cameras_xml)
        + "\n  </cameras>\n</calibration>\n"
    )


def rotate_pixels(px: np.ndarray, size: tuple[int, int], degrees: int) -> np.ndarray:
    """Where a pixel of a W x H image lands when the image is turned clockwise (np.rot90(-k))."""
    w, h = size
    u, v = px[:, 0], px[:, 1]
    if degrees == 90:
        return np.stack([h - 1 - v, u], axis=1)
    if degrees == 180:
        return np.stack([w - 1 - u, h - 1 - v], axis=1)
    if degrees == 270:
        return np.stack([v, w - 1 - u], axis=1)
    return px


def test_qca_landscape_camera_with_fov_offset(tmp_path: Path) -> None:
    cam = known_camera(0, 1920, 1088)
    path = tmp_path / "session.qca.txt"
    # The video window starts at (16, 8) on the sensor: the principal point moves with it.
    path.write_text(qca_file([qca_camera_xml("26580", cam, fov_offset=(16, 8))]))
    loaded = load_calibration(path)
    assert list(loaded) == ["cam26580"]
    assert_projects_like(loaded["cam26580"], cam, tol=1e-6)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_qca_portrait_camera_follows_viewrotation(tmp_path: Path, degrees: int) -> None:
    sensor = known_camera(1, 1920, 1088)
    path = tmp_path / "portrait.qca.txt"
    path.write_text(qca_file([qca_camera_xml("cam_01", sensor, viewrotation=degrees)]))
    cal = load_calibration(path)["cam_01"]  # a serial starting with letters is kept as is
    X = points3d()
    expected = rotate_pixels(cv_project(sensor, X), sensor["size"], degrees)
    np.testing.assert_allclose(cal.project(X), expected, atol=1e-6, rtol=0)
    size = sensor["size"] if degrees == 180 else sensor["size"][::-1]
    assert (cal.width, cal.height) == tuple(size)


def test_qca_downscaled_video_resolution(tmp_path: Path) -> None:
    delivered = known_camera(2, 960, 544)  # 540p video of a 1920 x 1088 sensor
    path = tmp_path / "half.qca.txt"
    path.write_text(qca_file([qca_camera_xml("123", delivered, video_resolution="540p",
                                             res_scale=0.5)]))
    assert_projects_like(load_calibration(path)["cam123"], delivered, tol=1e-6)


def test_qca_several_cameras_in_file_order(tmp_path: Path) -> None:
    cams = {"30001": known_camera(0, 1920, 1088), "30002": known_camera(3, 1920, 1088)}
    path = tmp_path / "two.qca.txt"
    path.write_text(qca_file([qca_camera_xml(s, c) for s, c in cams.items()]))
    loaded = load_calibration(path)
    assert list(loaded) == ["cam30001", "cam30002"]
    for serial, cam in cams.items():
        assert_projects_like(loaded[f"cam{serial}"], cam, tol=1e-6)


# ----------------------------------------------------------------------------- JSON and saving


def test_json_with_matrix_or_rvec(tmp_path: Path) -> None:
    a, b = known_camera(0), known_camera(4, 720, 1280)
    rvec, _ = cv2.Rodrigues(b["R"])
    doc = {"cameras": {
        "front": {"K": a["K"].tolist(), "R": a["R"].tolist(), "t": a["t"].tolist(),
                  "dist": a["dist"].tolist(), "size": list(a["size"])},
        "side": {"K": b["K"].tolist(), "rvec": rvec.ravel().tolist(), "t": b["t"].tolist(),
                 "dist": b["dist"][:4].tolist() + [0.0], "size": list(b["size"])},
    }}
    b["dist"] = np.r_[b["dist"][:4], 0.0]
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(doc))
    loaded = load_calibration(path)
    assert list(loaded) == ["front", "side"]
    assert_projects_like(loaded["front"], a)
    assert_projects_like(loaded["side"], b)


def some_calibrations() -> dict[str, Calibration]:
    out = {}
    for i, name in enumerate(["cam0", "Cam 1 \"quoted\"", "portrait"]):
        c = known_camera(i, *((1080, 1920) if name == "portrait" else (1920, 1080)))
        out[name] = Calibration(K=c["K"], R=c["R"], t=c["t"], dist=c["dist"], width=c["size"][0],
                                height=c["size"][1])
    return out


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_save_then_load_round_trips(tmp_path: Path, suffix: str) -> None:
    cams = some_calibrations()
    path = tmp_path / f"out{suffix}"
    (calib_mod.save_calibration_json if suffix == ".json" else save_calibration_toml)(path, cams)
    loaded = load_calibration(path)
    assert list(loaded) == list(cams)
    for name, cal in cams.items():
        got = loaded[name]
        for field in ("K", "t", "dist"):
            np.testing.assert_array_equal(getattr(got, field), getattr(cal, field))
        np.testing.assert_allclose(got.R, cal.R, atol=1e-14, rtol=0)
        assert (got.width, got.height) == (cal.width, cal.height)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp files left


def test_save_is_atomic_when_writing_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "calibration.json"
    save_calibration_json(path, some_calibrations())
    before = path.read_bytes()

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(calib_mod.json, "dump", broken_dump)
    with pytest.raises(UserInputError, match="cannot write"):
        save_calibration_json(path, {"x": next(iter(some_calibrations().values()))})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["calibration.json"]
    with pytest.raises(UserInputError, match="cannot write"):
        save_calibration_toml(tmp_path / "missing" / "c.toml", some_calibrations())


# ----------------------------------------------------------------------------- bad inputs


def json_camera(**overrides) -> dict:
    cam = known_camera(0)
    entry = {"K": cam["K"].tolist(), "R": cam["R"].tolist(), "t": cam["t"].tolist(),
             "dist": cam["dist"].tolist(), "size": list(cam["size"])}
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not None}


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (json_camera(K=None), "no K"),
        (json_camera(R=None), "no R or rvec"),
        (json_camera(t=None), "no t"),
        (json_camera(K=[[1, 0, 0], [0, 1, 0]]), "K has shape"),
        (json_camera(t=[1, 2]), "t has shape"),
        (json_camera(R=[1, 2, 3]), "R has shape"),
        (json_camera(t=[0, float("nan"), 1]), "non-finite"),
        (json_camera(K=[[float("inf"), 0, 1], [0, 1, 1], [0, 0, 1]]), "non-finite"),
        (json_camera(R=(1.1 * np.eye(3)).tolist()), "not orthonormal"),
        (json_camera(R=np.diag([1.0, 1.0, -1.0]).tolist()), "det"),
        (json_camera(dist=[0.1, 0.2, 0.3]), "expected 4 or 5"),
        (json_camera(size=[0, 100]), "size"),
        (json_camera(K="abc"), "K"),
    ],
)
def test_bad_json_camera(tmp_path: Path, entry: dict, match: str) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"cameras": {"cam0": entry}}))
    assert_user_error(path, match)


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("c.toml", "[cam_0\nname = 'x'", "not valid TOML"),
        ("c.json", '{"cameras": {', "not valid JSON"),
        ("c.qca.txt", "<calibration><cameras><camera></calibration>", "not valid XML"),
        ("c.txt", "<other/>", "not a Qualisys calibration"),
        ("c.yaml", "cameras: []", "unknown calibration format"),
        ("c.txt", "just text", "unknown calibration format"),
        ("c.json", '{"cams": {}}', '"cameras"'),
        ("c.json", '{"cameras": {}}', "no cameras"),
        ("c.toml", "[metadata]\nadjusted = false\n", "no cameras"),
        ("c.qca.txt", qca_file([]), "no cameras"),
        ("c.toml", '[cam_0]\nname = "a"\nrotation = [0.0, 0.0, 0.0]\n'
                   "translation = [0.0, 0.0, 1.0]\n", "no matrix"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, text: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert_user_error(path, match)


def test_missing_file_and_bad_units(tmp_path: Path) -> None:
    assert_user_error(tmp_path / "nope.toml", "not found")
    path = tmp_path / "c.toml"
    path.write_text(anipose_toml({"a": known_camera(0)}))
    assert_user_error(path, "unknown units", units="furlong")
    path.write_text(anipose_toml({"a": known_camera(0)}, metadata='[metadata]\nunits = "ft"\n'))
    assert_user_error(path, "unknown units")


def test_toml_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    base = anipose_toml({"a": known_camera(0)})
    path.write_text(base.replace("translation = [", "translation = [nan, "))
    assert_user_error(path, "translation has shape")
    rot = base.split("rotation = ")[1].split("\n")[0]
    path.write_text(base.replace(f"rotation = {rot}", "rotation = [0.1, inf, 0.0]"))
    assert_user_error(path, "non-finite")
    path.write_text(base.replace(f"rotation = {rot}", "rotation = [[1.0, 0.0], [0.0, 1.0]]"))
    assert_user_error(path, "rotation has shape")
    path.write_text(anipose_toml({"a": known_camera(0)}, metadata="") + base.replace("[cam_0]",
                                                                                     "[cam_1]"))
    assert_user_error(path, "appears twice")


def test_qca_bad_values(tmp_path: Path) -> None:
    cam = known_camera(0, 1920, 1088)
    good = qca_camera_xml("1", cam)
    path = tmp_path / "c.qca.txt"
    cases = [
        (good.replace('r11="', 'r11="2.0" old11="'), "not orthonormal"),
        (good.replace('x="', 'x="nan" oldx="'), "not finite"),
        (good.replace('focalLengthU="', 'focalLengthU="abc" old="'), "not a number"),
        (good.replace("<intrinsic ", "<ignored "), "no <intrinsic>"),
        (good.replace("<transform ", "<ignored "), "no <transform>"),
        (good.replace('viewrotation="0"', 'viewrotation="45"'), "viewrotation"),
        (good.replace('serial="1"', 'serial=""'), "no serial"),
        (good.replace(' y="', ' oldy="'), "no y attribute"),
    ]
    for xml, match in cases:
        path.write_text(qca_file([xml]))
        assert_user_error(path, match)


# ----------------------------------------------------------------------------- matching


def named(*names: str) -> dict[str, Calibration]:
    c = known_camera(0)
    return {n: Calibration(K=c["K"], R=c["R"], t=c["t"] + i, dist=c["dist"])
            for i, n in enumerate(names)}


def test_match_exact_case_and_number() -> None:
    cams = named("front", "SIDE", "cam_3", "cam26580", "unused_marker_cam")
    videos = ["side", "camera3", "Miqus_26580_video", "front"]
    got = match_calibration(cams, videos, "calibration.toml")
    assert [g is cams[n] for g, n in zip(got, ["SIDE", "cam_3", "cam26580", "front"])] == [True] * 4


def test_match_never_guesses_by_order() -> None:
    cams = named("left", "right")
    with pytest.raises(UserInputError, match=r"calibration camera names .* match no video") as e:
        match_calibration(cams, ["cam_a", "cam_b"], "calibration.toml")
    assert "calibration.toml" in str(e.value) and "cam_a" in str(e.value)


def test_match_ambiguous_numbers_raise() -> None:
    cams = named("cam1", "camera_1")
    with pytest.raises(UserInputError, match="match no video"):
        match_calibration(cams, ["video1"], "c.toml")
    cams = named("cam1")
    with pytest.raises(UserInputError, match="match no video"):
        match_calibration(cams, ["a1", "b1"], "c.toml")  # one entry, two claimants
