"""Camera calibration files: anipose / Pose2Sim TOML, Qualisys QTM ``.qca.txt``, and our JSON.

Every loader returns ``{camera name: Calibration}`` in file order, in our conventions
(x_cam = R @ X_world + t, R world->camera, t in mm, K in pixels, OpenCV distortion), so the rest
of the code never needs to know where a calibration came from.

TOML units rule (anipose writes whatever unit the board was measured in, usually mm; Pose2Sim
always writes metres):

1. the ``units=`` argument of :func:`load_calibration` wins ("mm", "cm" or "m");
2. else a ``units`` key in the ``[metadata]`` table (or at top level), as
   :func:`save_calibration_toml` writes it;
3. else a heuristic: if the median camera distance from the world origin, ``|t|``, is below
   50 the file is taken as metres (a camera 50 mm from the origin is implausible, a camera 50 m
   away is too), otherwise millimetres.

Qualisys camera names are ``"cam<serial>"`` (e.g. ``cam12345``; a serial that already starts with
letters, e.g. ``cam_01``, is used unchanged).
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
from scipy.spatial.transform import Rotation

from .atomic import atomic_open
from .camera import Calibration
from .errors import UserInputError
from .tomlio import tomllib

UNIT_TO_MM = {"mm": 1.0, "millimeter": 1.0, "millimetre": 1.0, "cm": 10.0, "m": 1000.0,
              "meter": 1000.0, "metre": 1000.0}
# Median |t| below this (in file units) means the TOML file is in metres (see module docstring).
METRES_HEURISTIC_LIMIT = 50.0
ROTATION_TOLERANCE = 1e-3  # files are written with 6-7 significant digits
TOML_NON_CAMERA_TABLES = {"metadata", "capture_volume", "charuco", "checkerboard"}
TOML_CAMERA_KEYS = {"matrix", "rotation", "translation", "distortions"}


# --------------------------------------------------------------------------- validation helpers


def _matrix(source: Path, cam: str, key: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A finite float array of an exact shape, or a UserInputError naming camera and key."""
    if value is None:
        raise UserInputError(source, f"camera {cam!r} has no {key} (partial calibration)")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserInputError(source, f"camera {cam!r}: {key} is not a numeric array") from None
    if arr.shape != shape:
        raise UserInputError(
            source, f"camera {cam!r}: {key} has shape {list(arr.shape)}, expected {list(shape)}"
        )
    if not np.all(np.isfinite(arr)):
        raise UserInputError(source, f"camera {cam!r}: {key} contains non-finite numbers")
    return arr


def _distortion(source: Path, cam: str, key: str, value: Any) -> np.ndarray:
    if value is None:
        return np.zeros(5)
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise UserInputError(source, f"camera {cam!r}: {key} is not a list of numbers") from None
    if arr.size not in (0, 4, 5):
        raise UserInputError(
            source,
            f"camera {cam!r}: {key} has {arr.size} numbers, expected 4 or 5 (k1 k2 p1 p2 k3)",
        )
    if not np.all(np.isfinite(arr)):
        raise UserInputError(source, f"camera {cam!r}: {key} contains non-finite numbers")
    return arr


def _rotation(source: Path, cam: str, R: np.ndarray) -> np.ndarray:
    """Check R is a proper rotation (within file precision) and snap it onto SO(3)."""
    err = np.abs(R @ R.T - np.eye(3)).max()
    det = float(np.linalg.det(R))
    if err > ROTATION_TOLERANCE or abs(det - 1.0) > ROTATION_TOLERANCE:
        raise UserInputError(
            source,
            f"camera {cam!r}: rotation is not orthonormal with det 1 "
            f"(max |R R^T - I| = {err:.2g}, det = {det:.4g})",
        )
    if err > 1e-12:
        u, _, vt = np.linalg.svd(R)
        R = u @ vt
    return R


def _rodrigues(source: Path, cam: str, key: str, value: Any) -> np.ndarray:
    rvec = _matrix(source, cam, key, value, (3,))
    return Rotation.from_rotvec(rvec).as_matrix()


def _size(source: Path, cam: str, value: Any) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    size = _matrix(source, cam, "size", value, (2,))
    if np.any(size <= 0) or np.any(size != np.round(size)):
        raise UserInputError(source, f"camera {cam!r}: size must be two positive integers [w, h]")
    return int(size[0]), int(size[1])


def _intrinsics(source: Path, cam: str, key: str, value: Any) -> np.ndarray:
    K = _matrix(source, cam, key, value, (3, 3))
    if K[0, 0] <= 0 or K[1, 1] <= 0 or np.any(K[2] != (0.0, 0.0, 1.0)) or K[1, 0] != 0:
        raise UserInputError(
            source, f"camera {cam!r}: {key} is not a camera matrix [[fx,s,cx],[0,fy,cy],[0,0,1]]"
        )
    return K


def _make(source: Path, cam: str, K: np.ndarray, R: np.ndarray, t: np.ndarray,
          dist: np.ndarray, size: tuple[int | None, int | None]) -> Calibration:
    R = _rotation(source, cam, R)
    return Calibration(K=K, R=R, t=t, dist=dist, width=size[0], height=size[1])


# --------------------------------------------------------------------------- loading


def load_calibration(
    path: str | os.PathLike[str], units: str | None = None
) -> dict[str, Calibration]:
    """Read a calibration file (format from its name and content) into {camera name: Calibration}.

    ``units`` overrides the length unit of a TOML file's translations ("mm", "cm", "m"); other
    formats have fixed units and ignore it.
    """
    source = Path(path)
    if units is not None and units.lower() not in UNIT_TO_MM:
        raise UserInputError(source, f"unknown units {units!r}; use one of mm, cm, m")
    if not source.is_file():
        raise UserInputError(source, "calibration file not found")
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(source, f"cannot read calibration file ({exc})") from None
    name = source.name.lower()
    if name.endswith(".toml"):
        cams = _load_toml(source, text, units)
    elif name.endswith(".json"):
        cams = _load_json(source, text)
    elif name.endswith((".qca.txt", ".qca", ".xml")) or (
        name.endswith(".txt") and text.lstrip().startswith("<")
    ):
        cams = _load_qca(source, text)
    else:
        raise UserInputError(
            source, "unknown calibration format; expected .toml, .json or a Qualisys .qca.txt"
        )
    if not cams:
        raise UserInputError(source, "calibration file contains no cameras")
    return cams


def _add(source: Path, cams: dict[str, Calibration], name: str, cal: Calibration) -> None:
    if name in cams:
        raise UserInputError(source, f"camera name {name!r} appears twice")
    cams[name] = cal


def _unit_scale(source: Path, units: Any) -> float:
    if not isinstance(units, str) or units.lower() not in UNIT_TO_MM:
        raise UserInputError(source, f"unknown units {units!r}; use one of mm, cm, m")
    return UNIT_TO_MM[units.lower()]


def _load_toml(source: Path, text: str, units: str | None) -> dict[str, Calibration]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(source, f"not valid TOML ({exc})") from None
    raw: list[tuple[str, dict[str, Any]]] = []
    for key, table in doc.items():
        if not isinstance(table, dict) or key.lower() in TOML_NON_CAMERA_TABLES:
            continue
        if not TOML_CAMERA_KEYS & set(table):
            continue  # some other tool's settings table, not a camera
        name = table.get("name", key)
        raw.append((str(name), table))
    parsed = []
    for name, table in raw:
        K = _intrinsics(source, name, "matrix", table.get("matrix"))
        rot = table.get("rotation")
        if isinstance(rot, list) and rot and all(isinstance(r, list) for r in rot):
            R = _matrix(source, name, "rotation", rot, (3, 3))
        else:
            R = _rodrigues(source, name, "rotation", rot)
        t = _matrix(source, name, "translation", table.get("translation"), (3,))
        dist = _distortion(source, name, "distortions", table.get("distortions"))
        size = _size(source, name, table.get("size"))
        parsed.append((name, K, R, t, dist, size))
    if units is not None:
        scale = UNIT_TO_MM[units.lower()]
    else:
        meta = doc.get("metadata")
        file_units = meta.get("units") if isinstance(meta, dict) else None
        if isinstance(doc.get("units"), str):
            file_units = doc["units"]
        if file_units is not None:
            scale = _unit_scale(source, file_units)
        elif parsed:
            median_t = float(np.median([np.linalg.norm(p[3]) for p in parsed]))
            scale = 1000.0 if 0 < median_t < METRES_HEURISTIC_LIMIT else 1.0
        else:
            scale = 1.0
    cams: dict[str, Calibration] = {}
    for name, K, R, t, dist, size in parsed:
        _add(source, cams, name, _make(source, name, K, R, t * scale, dist, size))
    return cams


def _load_json(source: Path, text: str) -> dict[str, Calibration]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserInputError(source, f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cameras"), dict):
        raise UserInputError(source, 'JSON calibration needs a "cameras" object {name: camera}')
    scale = _unit_scale(source, doc["units"]) if "units" in doc else 1.0
    cams: dict[str, Calibration] = {}
    for name, entry in doc["cameras"].items():
        if not isinstance(entry, dict):
            raise UserInputError(source, f"camera {name!r} is not an object")
        K = _intrinsics(source, name, "K", entry.get("K"))
        if entry.get("R") is not None:
            R = _matrix(source, name, "R", entry["R"], (3, 3))
        elif entry.get("rvec") is not None:
            R = _rodrigues(source, name, "rvec", entry["rvec"])
        else:
            raise UserInputError(source, f"camera {name!r} has no R or rvec (partial calibration)")
        t = _matrix(source, name, "t", entry.get("t"), (3,)) * scale
        dist = _distortion(source, name, "dist", entry.get("dist"))
        size = _size(source, name, entry.get("size"))
        _add(source, cams, str(name), _make(source, name, K, R, t, dist, size))
    return cams


# Qualisys camera frame -> OpenCV camera frame: QTM's camera looks down its -z with y up;
# OpenCV's looks down +z with y down, so y and z flip (a half turn about x).
QUALISYS_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
QCA_SUBPIXELS = 64.0  # QTM writes focal lengths, principal points and skew in 1/64 pixel


def _xml_float(source: Path, cam: str, element: ET.Element, *names: str,
               default: float | None = None) -> float:
    """A finite number attribute (first of several accepted spellings)."""
    for name in names:
        raw = element.get(name)
        if raw is not None:
            try:
                value = float(raw)
            except ValueError:
                raise UserInputError(
                    source, f"camera {cam!r}: <{element.tag} {name}> is not a number ({raw!r})"
                ) from None
            if not math.isfinite(value):
                raise UserInputError(
                    source, f"camera {cam!r}: <{element.tag} {name}> is not finite ({raw!r})"
                )
            return value
    if default is not None:
        return default
    raise UserInputError(source, f"camera {cam!r}: <{element.tag}> has no {names[0]} attribute")


def _qca_camera_name(serial: str) -> str:
    return f"cam{serial}" if serial[:1].isdigit() else serial


def rotate_calibration_90(cal: Calibration) -> Calibration:
    """The same camera for its image turned 90 degrees clockwise (width and height swap).

    Pixel (u, v) of a W x H image lands on (H - 1 - v, u) (pixel centres on integers, as in
    OpenCV and np.rot90(image, -1)); this is a quarter turn of the camera about its optical axis,
    so R and t turn with it, fx/fy and the principal point swap, and the tangential distortion
    terms change roles (p1' = p2, p2' = -p1); radial terms are unchanged.
    """
    if cal.height is None or cal.width is None:
        raise ValueError("rotating a calibration needs its image size")
    K = cal.K
    if K[0, 1] != 0:
        raise ValueError("rotating a calibration with skew is not supported")
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    K_rot = np.array(
        [[K[1, 1], 0.0, cal.height - 1 - K[1, 2]], [0.0, K[0, 0], K[0, 2]], [0.0, 0.0, 1.0]]
    )
    k1, k2, p1, p2, k3 = cal.dist
    return Calibration(
        K=K_rot, R=turn @ cal.R, t=turn @ cal.t, dist=np.array([k1, k2, p2, -p1, k3]),
        width=cal.height, height=cal.width,
    )


def _qca_camera(source: Path, element: ET.Element) -> tuple[str, Calibration]:
    """One <camera> of a QTM export, in OpenCV conventions (see _load_qca)."""
    serial = (element.get("serial") or "").strip()
    if not serial:
        raise UserInputError(source, "a <camera> has no serial attribute")
    name = _qca_camera_name(serial)
    transform = element.find("transform")
    intrinsic = element.find("intrinsic")
    if transform is None or intrinsic is None:
        missing = "transform" if transform is None else "intrinsic"
        raise UserInputError(
            source, f"camera {name!r} has no <{missing}> (partial calibration)"
        )
    fov = element.find("fov_video")
    if fov is None:
        fov = element.find("fov_marker")
    if fov is None:
        raise UserInputError(source, f"camera {name!r} has no <fov_video> or <fov_marker>")
    left, top, right, bottom = (
        _xml_float(source, name, fov, key) for key in ("left", "top", "right", "bottom")
    )
    scale = 1.0
    resolution = (element.get("video_resolution") or "").strip().lower()
    if re.fullmatch(r"\d+p", resolution):
        scale = int(resolution[:-1]) / 1080.0
    width, height = (right - left + 1) * scale, (bottom - top + 1) * scale
    if width <= 0 or height <= 0:
        raise UserInputError(source, f"camera {name!r}: empty field of view")

    def sub(*keys: str, default: float | None = None) -> float:
        return _xml_float(source, name, intrinsic, *keys, default=default)

    fu = sub("focalLengthU") / QCA_SUBPIXELS * scale
    fv = sub("focalLengthV") / QCA_SUBPIXELS * scale
    cu = (sub("centerPointU") / QCA_SUBPIXELS - left) * scale
    cv = (sub("centerPointV") / QCA_SUBPIXELS - top) * scale
    skew = sub("skew", default=0.0) / QCA_SUBPIXELS * scale
    K = _intrinsics(source, name, "intrinsic", [[fu, skew, cu], [0, fv, cv], [0, 0, 1]])
    dist = np.array([
        sub("radialDistortion1", default=0.0),
        sub("radialDistortion2", default=0.0),
        sub("tangentalDistortion1", "tangentialDistortion1", default=0.0),
        sub("tangentalDistortion2", "tangentialDistortion2", default=0.0),
        sub("radialDistortion3", default=0.0),
    ])
    centre = np.array([_xml_float(source, name, transform, k) for k in ("x", "y", "z")])
    columns = [_xml_float(source, name, transform, f"r{i}{j}")
               for i in (1, 2, 3) for j in (1, 2, 3)]
    cam_to_world = np.array(columns).reshape(3, 3).T  # written column by column
    cam_to_world = _rotation(source, name, cam_to_world)
    R = QUALISYS_TO_OPENCV @ cam_to_world.T
    cal = Calibration(K=K, R=R, t=-R @ centre, dist=dist,
                      width=round(width), height=round(height))
    rotation = element.get("viewrotation", "0").strip() or "0"
    if rotation not in ("0", "90", "180", "270"):
        raise UserInputError(
            source, f"camera {name!r}: viewrotation {rotation!r} is not 0, 90, 180 or 270"
        )
    for _ in range(int(rotation) // 90):
        if cal.K[0, 1] != 0:
            raise UserInputError(
                source, f"camera {name!r}: skew with viewrotation {rotation} is not supported"
            )
        cal = rotate_calibration_90(cal)
    return name, cal


def _load_qca(source: Path, text: str) -> dict[str, Calibration]:
    """Qualisys QTM calibration export (XML, usually named ``*.qca.txt``).

    Per <camera>: <transform x y z r11..r33> gives the camera centre in world mm and the
    camera-to-world rotation written column by column (r11 r12 r13 is the first column);
    <intrinsic> gives focalLengthU/V, centerPointU/V and skew in 1/64 sensor pixels, and
    OpenCV-style (dimensionless) radialDistortion1..3 and tangentalDistortion1..2 (the spelling
    QTM uses; "tangential" is accepted too). The principal point is made relative to the
    <fov_video> window (falling back to <fov_marker>), whose size becomes the image size.
    A camera with ``video_resolution="540p"`` (etc.) has its fov and intrinsics scaled by
    540/1080, as QTM delivers downscaled video from the 1080-row sensor coordinates.
    ``viewrotation`` (0/90/180/270) says the delivered video is the sensor image turned that
    many degrees clockwise; the calibration is turned with it (see rotate_calibration_90), so
    it projects into the video as delivered.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise UserInputError(source, f"not valid XML ({exc})") from None
    if root.tag != "calibration":
        raise UserInputError(source, f"not a Qualisys calibration (root element <{root.tag}>)")
    cams: dict[str, Calibration] = {}
    for element in root.iterfind("cameras/camera"):
        name, cal = _qca_camera(source, element)
        _add(source, cams, name, cal)
    return cams


# --------------------------------------------------------------------------- saving


def _camera_record(cal: Calibration) -> dict[str, Any]:
    rec = cal.to_dict()
    if cal.width is not None and cal.height is not None:
        rec["size"] = [int(cal.width), int(cal.height)]
    return rec


def save_calibration_json(path: str | os.PathLike[str], cams: dict[str, Calibration]) -> None:
    """Write cameras as docs/FORMATS.md's calibration.json (mm, R as a matrix), atomically."""
    doc = {
        "format": "mcss-calibration",
        "units": "mm",
        "cameras": {str(name): _camera_record(cal) for name, cal in cams.items()},
    }
    with atomic_open(path) as fh:
        json.dump(doc, fh, indent=1)


def save_calibration_toml(path: str | os.PathLike[str], cams: dict[str, Calibration]) -> None:
    """Write cameras as anipose-style TOML (Rodrigues rotation, translation in mm), atomically.

    A ``[metadata]`` table with ``units = "mm"`` makes the unit explicit for our loader; anipose
    and Pose2Sim skip that table.
    """
    def floats(values: Any) -> str:  # repr() round-trips float64 exactly
        return "[" + ", ".join(repr(float(v)) for v in np.ravel(values)) + "]"

    lines: list[str] = []
    for i, (name, cal) in enumerate(cams.items()):
        rvec = Rotation.from_matrix(cal.R).as_rotvec()
        lines.append(f"[cam_{i}]")
        lines.append(tomli_w.dumps({"name": str(name)}).strip())
        if cal.width is not None and cal.height is not None:
            lines.append(f"size = [{int(cal.width)}, {int(cal.height)}]")
        lines.append("matrix = [" + ", ".join(floats(row) for row in cal.K) + "]")
        lines.append("distortions = " + floats(cal.dist))
        lines.append("rotation = " + floats(rvec))
        lines.append("translation = " + floats(cal.t))
        lines.append("fisheye = false")
        lines.append("")
    lines += ["[metadata]", 'units = "mm"', 'written_by = "mcss_studio"', ""]
    text = "\n".join(lines)
    with atomic_open(path) as fh:
        fh.write(text)


# --------------------------------------------------------------------------- matching


def _numbers(name: str) -> set[int]:
    return {int(run) for run in re.findall(r"\d+", name)}


def match_calibration(
    cams: dict[str, Calibration], camera_names: Sequence[str], source_path: str | os.PathLike[str]
) -> list[Calibration]:
    """The calibration of each video camera, in ``camera_names`` order; never guesses by order.

    Rules, each applied to what earlier rules left unpaired: exact name; the same name ignoring
    case; a number shared by both names (``cam_1`` ~ ``camera1``, Qualisys ``cam26580`` ~
    ``Miqus_26580.avi``), accepted only when it pairs exactly one video with exactly one
    calibration entry. Calibration entries without a video are fine (marker-only cameras); a
    video without a calibration entry raises UserInputError naming ``source_path``.
    """
    paired: dict[str, str] = {}  # video name -> calibration name
    free = [name for name in cams]

    def pair(video: str, calib: str) -> None:
        paired[video] = calib
        free.remove(calib)

    for video in camera_names:
        if video in free:
            pair(video, video)
    for video in camera_names:
        if video in paired:
            continue
        hits = [c for c in free if c.lower() == video.lower()]
        if len(hits) == 1:
            pair(video, hits[0])
    pending = [v for v in camera_names if v not in paired]
    candidates = {v: [c for c in free if _numbers(c) & _numbers(v)] for v in pending}
    for video in pending:
        hits = candidates[video]
        if len(hits) == 1 and sum(hits[0] in other for other in candidates.values()) == 1:
            pair(video, hits[0])
    unmatched = [v for v in camera_names if v not in paired]
    if unmatched:
        raise UserInputError(
            source_path,
            f"calibration camera names {free} match no video: videos without calibration "
            f"{unmatched} (rename the videos or the calibration cameras so they share a name "
            "or number)",
        )
    return [cams[paired[v]] for v in camera_names]
