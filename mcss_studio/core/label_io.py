"""Labels in and out of the store: CSV, NPZ and JSON files, and ground truth of a dataset.

Export writes every stored field (2D points per camera with visibility and source, 3D joints
with source, reprojection errors, who/when/revision) atomically; import reads the same three
formats back into FrameLabels, so export -> import is lossless. `labels_from_ground_truth` makes
labels of chosen frames from a dataset's 3D ground truth (Human3.6M, MPI-INF-3DHP, synthetic),
projected into each calibrated view, all with source "imported": a limited-label study from
the command line. Bad files raise one UserInputError naming the file and the problem.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .errors import UserInputError
from .joints import JOINT_NAMES, NUM_JOINTS
from .labels import SOURCES, VISIBLE, FrameLabel
from .sources.base import Dataset

FORMATS = ("csv", "npz", "json")
FILE_FORMAT = "mcss-labels"
CSV_COLUMNS = ("sequence", "frame", "subject", "camera", "joint", "x", "y", "z", "visibility",
               "source", "error_px", "author", "modified", "revision")
IMPORTED = SOURCES.index("imported")


def file_format(path: Path) -> str:
    kind = Path(path).suffix.lower().lstrip(".")
    if kind not in FORMATS:
        raise UserInputError(path, f"unknown label file type {kind!r}; use .csv, .npz or .json")
    return kind


# ------------------------------------------------------------------------------ export


def export_labels(labels: Iterable[FrameLabel], path: str | os.PathLike[str],
                  revision: int) -> int:
    """Write labels to path (.csv, .npz or .json, atomically); the number of frames."""
    path = Path(path)
    kind = file_format(path)
    labels = list(labels)
    writer: dict[str, Callable[[list[FrameLabel], Path, int], None]] = {
        "csv": _write_csv, "npz": _write_npz, "json": _write_json}
    writer[kind](labels, path, revision)
    return len(labels)


def _nested(a: np.ndarray) -> list:
    """Nested lists with None where the array has NaN (JSON has no NaN)."""
    return np.where(np.isfinite(a), a, None).tolist()


def _label_doc(lab: FrameLabel) -> dict:
    return {
        "sequence": lab.sequence, "frame": lab.frame, "subject": lab.subject,
        "cameras": list(lab.cameras), "points2d": _nested(lab.points2d),
        "visibility": lab.visibility.tolist(),
        "source2d": [[SOURCES[s] for s in row] for row in lab.source2d.tolist()],
        "joints3d": _nested(lab.joints3d), "source3d": [SOURCES[s] for s in lab.source3d],
        "error2d": _nested(lab.error2d), "author": lab.author, "modified": lab.modified,
        "revision": lab.revision,
    }


def _write_json(labels: list[FrameLabel], path: Path, revision: int) -> None:
    doc = {"format": FILE_FORMAT, "version": 1, "revision": revision, "units": "mm, px",
           "joint_names": list(JOINT_NAMES), "labels": [_label_doc(lab) for lab in labels]}
    with atomic_open(path) as fh:
        json.dump(doc, fh, indent=1, allow_nan=False)


def _write_csv(labels: list[FrameLabel], path: Path, revision: int) -> None:
    with atomic_open(path, newline="") as fh:
        fh.write(f"# {FILE_FORMAT} v1, revision {revision}: 2D rows name a camera (x, y px); "
                 f"3D rows have none (x, y, z mm)\n")
        out = csv.writer(fh)
        out.writerow(CSV_COLUMNS)
        for lab in labels:
            who = (lab.author, repr(lab.modified), lab.revision)
            for c, cam in enumerate(lab.cameras):
                for j in range(lab.num_joints):
                    x, y = (_cell(v) for v in lab.points2d[c, j])
                    out.writerow((lab.sequence, lab.frame, lab.subject, cam, JOINT_NAMES[j], x,
                                  y, "", int(lab.visibility[c, j]), SOURCES[lab.source2d[c, j]],
                                  _cell(lab.error2d[c, j]), *who))
            for j in range(lab.num_joints):
                x, y, z = (_cell(v) for v in lab.joints3d[j])
                out.writerow((lab.sequence, lab.frame, lab.subject, "", JOINT_NAMES[j], x, y, z,
                              "", SOURCES[lab.source3d[j]], "", *who))


def _cell(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ""


def _write_npz(labels: list[FrameLabel], path: Path, revision: int) -> None:
    n = len(labels)
    cmax = max((len(lab.cameras) for lab in labels), default=0)
    j = NUM_JOINTS
    arrays = {
        "points2d": np.full((n, cmax, j, 2), np.nan), "visibility": np.zeros((n, cmax, j), "u1"),
        "source2d": np.zeros((n, cmax, j), "u1"), "joints3d": np.full((n, j, 3), np.nan),
        "source3d": np.zeros((n, j), "u1"), "error2d": np.full((n, cmax, j), np.nan),
        "cameras": np.full((n, cmax), "", dtype=object)}
    for i, lab in enumerate(labels):
        c = len(lab.cameras)
        for name in ("points2d", "visibility", "source2d", "error2d"):
            arrays[name][i, :c] = getattr(lab, name)
        arrays["joints3d"][i] = lab.joints3d
        arrays["source3d"][i] = lab.source3d
        arrays["cameras"][i, :c] = lab.cameras
    arrays["cameras"] = arrays["cameras"].astype(str)
    with atomic_open(path, "wb") as fh:
        np.savez(fh, format=np.array(FILE_FORMAT), revision=np.array(revision),
                 joint_names=np.array(JOINT_NAMES), sources=np.array(SOURCES),
                 sequence=np.array([lab.sequence for lab in labels], dtype=str),
                 frame=np.array([lab.frame for lab in labels], np.int64),
                 subject=np.array([lab.subject for lab in labels], dtype=str),
                 author=np.array([lab.author for lab in labels], dtype=str),
                 modified=np.array([lab.modified for lab in labels], np.float64),
                 label_revision=np.array([lab.revision for lab in labels], np.int64), **arrays)


# ------------------------------------------------------------------------------ import


def import_labels(path: str | os.PathLike[str]) -> list[FrameLabel]:
    """FrameLabels from a .csv, .npz or .json file written by export_labels."""
    path = Path(path)
    kind = file_format(path)
    if not path.is_file():
        raise UserInputError(path, "label file not found")
    try:
        return {"csv": _read_csv, "npz": _read_npz, "json": _read_json}[kind](path)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise UserInputError(path, f"not a valid {kind} label file ({exc})") from None


def _source_codes(names: Iterable[str]) -> list[int]:
    codes = []
    for name in names:
        if name not in SOURCES:
            raise ValueError(f"unknown source {name!r}")
        codes.append(SOURCES.index(name))
    return codes


def _floats(values: object) -> np.ndarray:
    return np.array(values, dtype=object).astype(float)  # None -> nan


def _check_joints(names: Sequence[str]) -> None:
    if list(names) != list(JOINT_NAMES):
        raise ValueError("the joints are not the 17 Human3.6M joints in order")


def _read_json(path: Path) -> list[FrameLabel]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(path, f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
        raise UserInputError(path, f"not an {FILE_FORMAT} file (no \"format\": \"{FILE_FORMAT}\")")
    _check_joints(doc["joint_names"])
    out = []
    for d in doc["labels"]:
        out.append(FrameLabel(
            str(d["sequence"]), int(d["frame"]), tuple(str(c) for c in d["cameras"]),
            _floats(d["points2d"]).reshape(len(d["cameras"]), NUM_JOINTS, 2),
            np.array(d["visibility"], np.uint8).reshape(len(d["cameras"]), NUM_JOINTS),
            np.array([_source_codes(r) for r in d["source2d"]], np.uint8).reshape(
                len(d["cameras"]), NUM_JOINTS),
            _floats(d["joints3d"]).reshape(NUM_JOINTS, 3),
            np.array(_source_codes(d["source3d"]), np.uint8),
            _floats(d["error2d"]).reshape(len(d["cameras"]), NUM_JOINTS),
            str(d.get("subject", "")), str(d.get("author", "")), float(d.get("modified", 0)),
            int(d.get("revision", 0))))
    return out


def _read_npz(path: Path) -> list[FrameLabel]:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserInputError(path, f"not a readable .npz file ({exc})") from None
    with data:
        if "format" not in data or str(data["format"]) != FILE_FORMAT:
            raise UserInputError(path, f"not an {FILE_FORMAT} file (no format array)")
        _check_joints(data["joint_names"].tolist())
        codes = np.array(_source_codes(data["sources"].tolist()), np.uint8)
        d = {k: data[k] for k in data.files}
    out = []
    for i in range(len(d["sequence"])):
        cams = tuple(c for c in d["cameras"][i].tolist() if c)
        c = len(cams)
        out.append(FrameLabel(
            str(d["sequence"][i]), int(d["frame"][i]), cams,
            d["points2d"][i, :c].astype(float), d["visibility"][i, :c].astype(np.uint8),
            codes[d["source2d"][i, :c]], d["joints3d"][i].astype(float),
            codes[d["source3d"][i]], d["error2d"][i, :c].astype(float),
            str(d["subject"][i]), str(d["author"][i]), float(d["modified"][i]),
            int(d["label_revision"][i])))
    return out


def _read_csv(path: Path) -> list[FrameLabel]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(path, f"cannot read ({exc})") from None
    rows = csv.DictReader(io.StringIO("".join(
        line for line in text.splitlines(keepends=True) if not line.startswith("#"))))
    if tuple(rows.fieldnames or ()) != CSV_COLUMNS:
        raise UserInputError(path, f"expected the columns {', '.join(CSV_COLUMNS)}")
    frames: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        frames.setdefault((row["sequence"], int(row["frame"])), []).append(row)
    return [_csv_label(key, group) for key, group in frames.items()]


def _csv_label(key: tuple[str, int], rows: list[dict]) -> FrameLabel:
    cameras = tuple(dict.fromkeys(r["camera"] for r in rows if r["camera"]))
    first = rows[0]
    lab = FrameLabel.empty(key[0], key[1], cameras, first["subject"])
    lab.author, lab.modified, lab.revision = (first["author"], float(first["modified"] or 0),
                                              int(first["revision"] or 0))
    index = {c: i for i, c in enumerate(cameras)}
    for r in rows:
        j = JOINT_NAMES.index(r["joint"])
        source = _source_codes([r["source"]])[0]
        if r["camera"]:
            c = index[r["camera"]]
            lab.points2d[c, j] = [_cell_value(r["x"]), _cell_value(r["y"])]
            lab.visibility[c, j] = int(r["visibility"])
            lab.source2d[c, j] = source
            lab.error2d[c, j] = _cell_value(r["error_px"])
        else:
            lab.joints3d[j] = [_cell_value(r[k]) for k in ("x", "y", "z")]
            lab.source3d[j] = source
    return lab


def _cell_value(text: str) -> float:
    return float(text) if text.strip() else np.nan


# ------------------------------------------------------------------------------ ground truth


def labels_from_ground_truth(dataset: Dataset, subjects: Sequence[str] | None, every: int = 1,
                             sequences: Sequence[str] | None = None,
                             frames: Sequence[int] | None = None) -> list[FrameLabel]:
    """Labels of every `every`-th frame (or the given `frames`) of the dataset's sequences of
    `subjects` (None: all) that have 3D ground truth: the 3D joints and, where calibrated,
    their projections in each view, all with source "imported"."""
    entries = dataset.for_subjects(list(subjects)) if subjects else list(dataset.sequences)
    if sequences:
        entries = [e for e in entries if e.name in set(sequences)]
        missing = sorted(set(sequences) - {e.name for e in entries})
        if missing:
            raise UserInputError(dataset.root, f"no sequence(s) {', '.join(missing)}"
                                               f"{' of those subjects' if subjects else ''}")
    if not entries:
        raise UserInputError(dataset.root, f"no sequences of subjects {list(subjects or [])}")
    out: list[FrameLabel] = []
    for entry in entries:
        with entry.open() as seq:
            if seq.joints3d is None:
                continue
            chosen = range(0, seq.num_frames, max(1, every)) if frames is None else \
                [f for f in frames if 0 <= f < seq.num_frames]
            out += _gt_labels(seq, list(chosen))
    return out


def _gt_labels(seq, frames: list[int]) -> list[FrameLabel]:
    names = seq.camera_names
    joints = np.asarray(seq.joints3d, np.float64)
    labels = []
    for t in frames:
        lab = FrameLabel.empty(seq.name, t, names, str(seq.subject or ""))
        lab.joints3d[:] = joints[t]
        lab.source3d[np.all(np.isfinite(joints[t]), axis=-1)] = IMPORTED
        if seq.is_calibrated:
            for c, cam in enumerate(seq.cameras):
                pts = cam.calibration.project(joints[t])
                ok = np.all(np.isfinite(pts), axis=-1) & (cam.calibration.to_camera(
                    joints[t])[:, 2] > 0)
                lab.points2d[c, ok] = pts[ok]
                lab.visibility[c, ok] = VISIBLE
                lab.source2d[c, ok] = IMPORTED
                lab.error2d[c, ok] = 0.0
        labels.append(lab)
    return labels
