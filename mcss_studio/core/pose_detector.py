"""A 2D pose detector for labelling assist and person boxes: MediaPipe Pose 0.10.14, optional.

What it guarantees:

- `landmarks_to_joints` maps MediaPipe's 33 pose landmarks (normalised image coordinates plus a
  visibility) to our 17 joints (core/joints.py, Human3.6M order) in native pixels, with one
  confidence per joint and a person box. It is plain numpy: it is tested, and used by any
  detector that yields MediaPipe's landmark layout, without mediapipe installed.
- `MediaPipeDetector` imports mediapipe only when it is built (the rest of the Studio never
  needs it) and only ever runs the "full" landmark model (model_complexity=1), whose weights
  ship inside the mediapipe 0.10.14 wheel: the "lite" and "heavy" models, and the landmark
  models of newer releases, are downloaded on first use, and nothing may be downloaded at run
  time. Another mediapipe version, or none, is a one-line UserInputError saying how to install
  the extra (INSTALL_HINT), never a traceback or a download.

The joint mapping (landmark numbers as in MediaPipe's PoseLandmark):

    hip (pelvis)    midpoint of the hips (23, 24)
    r_hip, r_knee, r_foot    24, 26, 28 (our "foot" is the ankle, as in Human3.6M)
    l_hip, l_knee, l_foot    23, 25, 27
    thorax          midpoint of the shoulders (11, 12)
    spine           midpoint of pelvis and thorax (Human3.6M's spine joint sits about halfway)
    neck            the nose (0): Human3.6M's joint 9 ("neck/nose") lies at the lower face
    head            the top of the head, which MediaPipe has no landmark for: from the middle
                    of eyes and ears (the skull's centre line, front view and profile alike), up
                    by HEAD_TOP_FACTOR times the mouth-to-eyes vector (about 7 cm on an adult
                    face; the crown is about 11 cm above the eyes)
    l_shoulder, l_elbow, l_wrist    11, 13, 15
    r_shoulder, r_elbow, r_wrist    12, 14, 16

A derived joint's confidence is the smallest visibility of the landmarks it is made of. The box
is the extent of all 33 landmarks, widened by BOX_MARGIN of its size on each side (the
landmarks are joint centres; the body's outline is beyond them) and clipped to the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .errors import UserInputError
from .joints import JOINT_NAMES, NUM_JOINTS

MEDIAPIPE_VERSION = "0.10.14"
MODEL_COMPLEXITY = 1  # "full": the only landmark model inside the wheel; 0 and 2 download
DETECTOR_ID = f"mediapipe-{MEDIAPIPE_VERSION}-pose-full"
MAPPING_VERSION = 1  # bump when landmarks_to_joints changes what it returns
INSTALL_HINT = (
    f'pip install --no-deps mediapipe=={MEDIAPIPE_VERSION} && pip install absl-py attrs '
    'flatbuffers "protobuf>=4.25.3,<5" matplotlib'
)
NUM_LANDMARKS = 33
HEAD_TOP_FACTOR = 1.6
BOX_MARGIN = 0.1

# MediaPipe PoseLandmark numbers used below
NOSE, L_EYE, R_EYE, L_EAR, R_EAR, MOUTH_L, MOUTH_R = 0, 2, 5, 7, 8, 9, 10
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28

# our joints that are one landmark each
_DIRECT = {
    "r_hip": R_HIP, "r_knee": R_KNEE, "r_foot": R_ANKLE,
    "l_hip": L_HIP, "l_knee": L_KNEE, "l_foot": L_ANKLE,
    "neck": NOSE,
    "l_shoulder": L_SHOULDER, "l_elbow": L_ELBOW, "l_wrist": L_WRIST,
    "r_shoulder": R_SHOULDER, "r_elbow": R_ELBOW, "r_wrist": R_WRIST,
}


@dataclass(frozen=True)
class Detection:
    """One person's 2D pose in one image: joints (17, 2) native pixels, confidence (17,) in
    0..1, box (4,) x0, y0, x1, y1. No person: every value NaN (confidence 0)."""

    joints: np.ndarray
    confidence: np.ndarray
    box: np.ndarray

    @classmethod
    def none(cls) -> Detection:
        return cls(np.full((NUM_JOINTS, 2), np.nan), np.zeros(NUM_JOINTS),
                   np.full(4, np.nan))

    @property
    def found(self) -> bool:
        return bool(np.isfinite(self.box).all())


class PoseDetector(Protocol):
    """What the keypoint store and labelling assist need of a detector (a fake in tests)."""

    detector_id: str  # names the model and the mapping; a store made by another is stale

    def detect(self, rgb: np.ndarray) -> Detection:
        """The most prominent person in an RGB uint8 HxWx3 image."""
        ...


def _mid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a + b) / 2.0


def landmarks_to_joints(landmarks: np.ndarray, width: int, height: int) -> Detection:
    """Our 17 joints from MediaPipe's (33, 3) landmarks: x, y normalised to the image (0..1,
    may lie outside), visibility 0..1 (a (33, 4) array with MediaPipe's z third is accepted)."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 2 or lm.shape[0] != NUM_LANDMARKS or lm.shape[1] not in (3, 4):
        raise ValueError(f"expected ({NUM_LANDMARKS}, 3 or 4) landmarks, got {lm.shape}")
    xy = lm[:, :2] * np.array([width, height], np.float64)
    vis = np.clip(lm[:, -1], 0.0, 1.0)
    joints = np.empty((NUM_JOINTS, 2))
    conf = np.empty(NUM_JOINTS)
    index = {name: j for j, name in enumerate(JOINT_NAMES)}
    for name, k in _DIRECT.items():
        joints[index[name]], conf[index[name]] = xy[k], vis[k]

    def derived(name: str, point: np.ndarray, parts: tuple[int, ...]) -> None:
        joints[index[name]], conf[index[name]] = point, vis[list(parts)].min()

    pelvis, thorax = _mid(xy[L_HIP], xy[R_HIP]), _mid(xy[L_SHOULDER], xy[R_SHOULDER])
    derived("hip", pelvis, (L_HIP, R_HIP))
    derived("thorax", thorax, (L_SHOULDER, R_SHOULDER))
    derived("spine", _mid(pelvis, thorax), (L_HIP, R_HIP, L_SHOULDER, R_SHOULDER))
    eyes, ears = _mid(xy[L_EYE], xy[R_EYE]), _mid(xy[L_EAR], xy[R_EAR])
    mouth = _mid(xy[MOUTH_L], xy[MOUTH_R])
    derived("head", _mid(eyes, ears) + HEAD_TOP_FACTOR * (eyes - mouth),
            (L_EYE, R_EYE, L_EAR, R_EAR, MOUTH_L, MOUTH_R))
    return Detection(joints, conf, _box(xy, width, height))


def _box(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = (hi - lo) * BOX_MARGIN
    lo, hi = lo - pad, hi + pad
    box = np.array([max(lo[0], 0.0), max(lo[1], 0.0), min(hi[0], width), min(hi[1], height)])
    if box[2] <= box[0] or box[3] <= box[1]:  # the person lies wholly outside the image
        return np.full(4, np.nan)
    return box


def mediapipe_status() -> str | None:
    """None when the detector can run here, else why not (one line, with the install recipe)."""
    try:
        import mediapipe  # noqa: F401  (lazy: an optional extra)
    except ImportError:
        return f"the pose detector needs mediapipe {MEDIAPIPE_VERSION}; install it with: " \
               f"{INSTALL_HINT}"
    version = getattr(mediapipe, "__version__", "unknown")
    if version != MEDIAPIPE_VERSION:
        return (f"mediapipe {version} is installed; the pose detector needs "
                f"{MEDIAPIPE_VERSION} (its wheel carries the landmark model, newer releases "
                f"download theirs); install it with: {INSTALL_HINT}")
    return None


class MediaPipeDetector:
    """MediaPipe Pose, full landmark model, one still image at a time. Not thread-safe: use
    one instance per thread. Close it (or use `with`) to free its graph."""

    detector_id = DETECTOR_ID

    def __init__(self, min_detection_confidence: float = 0.5) -> None:
        problem = mediapipe_status()
        if problem is not None:
            raise UserInputError("mediapipe", problem)
        from mediapipe.python.solutions import pose as mp_pose

        self._pose = mp_pose.Pose(static_image_mode=True, model_complexity=MODEL_COMPLEXITY,
                                  min_detection_confidence=min_detection_confidence)

    def detect(self, rgb: np.ndarray) -> Detection:
        image = np.ascontiguousarray(rgb, dtype=np.uint8)
        result = self._pose.process(image)
        if result.pose_landmarks is None:
            return Detection.none()
        lm = np.array([(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark])
        return landmarks_to_joints(lm, image.shape[1], image.shape[0])

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None

    def __enter__(self) -> MediaPipeDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
