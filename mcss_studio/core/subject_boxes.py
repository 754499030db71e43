"""Subject boxes on real recordings: the person the rig is looking at, not whatever moves.

Two weight-free methods (core/boxes.py offers them as "rig" and "tracked"):

- `rig_boxes` (needs a calibration). Per camera a foreground mask at WORK_SIDE pixels: the
  difference to a temporal-median background, relit to each frame's global lighting (a light
  switched on, exposure drift), cast shadows removed. A voxel grid around the point the cameras
  aim at is carved with the masks: a voxel is occupied when it is foreground in every camera
  that sees it, one miss allowed with 4+ views (an occluded view or a hole in one mask does not
  erase the subject). Occupied voxels form 3D blobs; a blob holding two people standing apart
  is split on the floor plane (_split_people). The subject is the chain of blobs that is large,
  near where the cameras aim and moves at walking speed (subject_track.best_chain over the
  whole sequence). A blob may still hold a second person close by, its centroid between the
  two: the subject's body is the floor-count peak of the chosen blobs near where the cameras
  aim that moves least (_subject_floor_track). A second look then drops from each view's mask
  the colours that belong to the other foreground rather than to the subject's body core
  (_appearance_masks), carves again, and drops those colours (and the thin rim of blended
  colours they leave) from the masks the boxes are read from too. The subject's voxels are
  those of its blob within PERSON_REACH of its body and nearer to it than to another standing
  body (_subject_part): a tall column of its own, or where the others' colours carve in two
  views, followed over the sequence (_other_body_track: someone who barely moves is in the
  median background and carves only in part); each view's box is the part of them that
  lands on that view's own foreground, its bottom lowered to the subject's feet: the floor (as
  low as the subject's voxels reach in a quarter of the frames) under its body's floor
  position (_feet), since the carving often loses lower legs that stand still (they are in
  the median background).
  A bystander seen by two cameras, or equipment moving in one view, does not carve into a blob
  that all views agree on, or loses the chain to the subject.
- `tracked_boxes` (no calibration): per camera, foreground blobs (nearby parts joined), the
  most consistent chain of blobs over time (large, near the image centre, small steps).

Both return (C, T, 4) native-pixel boxes (NaN where nothing was ever found) and a (C, T) bool
`uncertain` flag from the method's own evidence: the frame had no candidate (box interpolated),
its candidate is much smaller than the subject usually is, or the raw box disagrees with the
smoothed one (IoU < 0.5).

Known limits (measured in benchmarks/bench_boxes.py and tests/test_subject_boxes.py): a second
person within about a metre of the subject whose own body does not carve into a column of its
own (one who stands still is in the median background) and whose colours are not told apart
from the subject's (a top the colour of the wall behind, or the subject's) stays within the
subject's reach and widens its box in the views where the two overlap; told apart, the split
halfway still leaves the ghost volume between the two, so a box can still reach onto the
other's arm (Demo_MultiPerson: 97..100% of frames per camera); a view occluded on less than half the
body boxes only the visible part; without a calibration, an object that touches the subject in
the image joins its blob. Memory: the masks and quantised colours of every frame are kept at
WORK_SIDE (about 130 kB per camera and frame), so very long recordings should be boxed in parts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from .camera import Calibration
from .errors import UserInputError
from .geometry import looked_at
from .imageops import fast_area_resize
from .sequence import MultiviewSequence
from .subject_track import Candidates, best_chain

ProgressFn = Callable[[int, int], None]
WORK_SIDE = 240  # longest side of the foreground masks, pixels
THRESHOLD = 20  # colour difference (0..255, largest channel) that counts as foreground
GRID_CELLS = 48  # voxels along each axis of the carving volume
PERSON_SIGMA = 100.0  # mm: floor-plane smoothing of a blob's voxel counts when splitting people
PERSON_SPACING = 400.0  # mm: two standing people's centres are at least this far apart
PERSON_MIN_HEIGHT = 1300.0  # mm: a split-off part shorter than this is a limb, not a person
MIN_SPLIT_VOXELS = 40  # smaller blobs are never split
HIDDEN_FRACTION = 0.5  # more of the blob than this unseen by a view: the view is occluded
WALK_SPEED = 2000.0  # mm/s: how fast the subject's centroid may move between frames (1 sigma)
OTHER_ODDS = 4.0  # a colour this much likelier on the others than on the subject is theirs
OTHER_MIN_PIXELS = 20  # ... and seen on them at least this often
PERSON_REACH = 900.0  # mm: the subject's voxels lie this close to their body's floor position
CORE_RADIUS = 350.0  # mm: a standing body's torso and legs lie this close to its floor position
OTHER_GAP = 800.0  # mm: another body's peak lies at least this far from the subject's
OTHER_MIN_VOXELS = 5  # a body seen in the others' colours: this many voxels near its peak
SMALL_FRACTION = 0.4  # a candidate below this fraction of the chain's median support is doubtful
FOOT_SPREAD = 150.0  # mm: a standing person's feet are about hip-width apart, under the body
FLOOR_QUANTILE = 0.25  # the floor: as low as the subject's voxels reach in this share of frames


@dataclass
class SubjectBoxes:
    """Boxes (C, T, 4) in native pixels and the frames whose box the method doubts (C, T)."""

    boxes: np.ndarray
    uncertain: np.ndarray


# -- foreground --------------------------------------------------------------------------------
def _work_size(width: int, height: int, side: int) -> tuple[tuple[int, int], float]:
    scale = min(1.0, side / max(width, height))
    return (max(1, round(width * scale)), max(1, round(height * scale))), scale


def foreground_masks(
    seq: MultiviewSequence, camera: int, side: int = WORK_SIDE, samples: int = 50,
    threshold: int = THRESHOLD, progress: Callable[[], None] | None = None,
    colours: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, float]:
    """(T, h, w) bool foreground of one camera at reduced size, and the scale native -> mask.
    With a `colours` list, each frame's quantised colours (colour_bins) are appended to it.

    The background is the per-pixel median of up to `samples` frames spread over the sequence.
    The background is relit to each frame first (per-channel gain, see _relit), so a global
    lighting change is not foreground; cast shadows are not either; small specks are opened
    away.
    """
    cam = seq.cameras[camera]
    size, scale = _work_size(cam.width, cam.height, side)
    T = seq.num_frames
    picks = np.unique(np.linspace(0, T - 1, min(samples, T)).round().astype(int))
    background = _stable_median(
        np.stack([fast_area_resize(seq.frame(camera, int(t)), size) for t in picks]))
    k_open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    masks = np.zeros((T, size[1], size[0]), dtype=bool)
    for t, rgb in enumerate(seq.iter_frames(camera)):
        image = fast_area_resize(rgb, size).astype(np.int16)
        changed = np.abs(image - _relit(background, image)).max(axis=2) > threshold
        mask = (changed & ~_shadow(image, background)).astype(np.uint8)
        masks[t] = cv2.morphologyEx(mask, cv2.MORPH_OPEN, k_open).astype(bool)
        if colours is not None:
            colours.append(colour_bins(image))
        if progress is not None:
            progress()
    return masks, scale


def colour_bins(image: np.ndarray) -> np.ndarray:
    """(h, w) uint16 colour of each pixel quantised to 16 levels a channel (4096 bins)."""
    q = (np.clip(image, 0, 255) >> 4).astype(np.uint16)
    return (q[..., 0] << 8) | (q[..., 1] << 4) | q[..., 2]


def _stable_median(samples: np.ndarray) -> np.ndarray:
    """Per-pixel median of (N, h, w, 3) frames after bringing each to one lighting (its
    per-channel gain to a first median undone), so a sequence whose lights change half way
    does not get a background that is a patchwork of both."""
    first = np.median(samples, axis=0)
    relit = np.stack([f / _gain(first, f) for f in samples.astype(np.float32)])
    return np.median(relit, axis=0).astype(np.int16)


def _gain(background: np.ndarray, image: np.ndarray) -> np.ndarray:
    """(3,) per-channel median ratio of image to background over all pixels (the person
    covers a minority of them): how much brighter the image's lighting is."""
    ratio = (image.reshape(-1, 3) + 1.0) / (background.reshape(-1, 3) + 1.0)
    return np.median(ratio, axis=0)


def _relit(background: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The background under the image's lighting, so lights going up or down, or a camera's
    exposure drifting, is not foreground."""
    return background * _gain(background, image)


def _shadow(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Pixels that are the background darkened with its colour kept: a cast shadow.

    Brightness 35..95% of the background's, chromaticity within 0.06 of it (the usual
    shadow test of background subtraction): the floor next to the feet is not the person.
    """
    bright = image.sum(axis=2).astype(np.float32) + 1.0
    base = background.sum(axis=2).astype(np.float32) + 1.0
    ratio = bright / base
    chroma = np.abs(image / bright[..., None] - background / base[..., None]).max(axis=2)
    return (ratio > 0.35) & (ratio < 0.95) & (chroma < 0.06)


# -- the carving volume ------------------------------------------------------------------------
@dataclass
class Grid:
    """Voxel centres (V, 3) in mm, their index in the (n, n, n) grid, and the voxel size."""

    centres: np.ndarray
    index: np.ndarray  # (V, 3) integer grid coordinates
    cells: int
    voxel: float
    focus: np.ndarray  # the point the cameras look at
    reach: float  # median camera distance from it, mm
    plane: np.ndarray  # (V, 2) voxel centres on the floor plane (perpendicular to up), mm
    height: np.ndarray  # (V,) voxel centres along up, mm
    # rows: the floor plane's two axes and up (plane = centres @ axes[:2].T, height = @ axes[2])
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))

    def world(self, plane: np.ndarray, height: float) -> np.ndarray:
        """World points (N, 3) of floor-plane positions (N, 2) at one height."""
        return plane @ self.axes[:2] + height * self.axes[2]


def carving_grid(cals: list[Calibration], cells: int = GRID_CELLS) -> Grid:
    """A cube around the rig's focus, sized by how far the cameras are from it."""
    focus = looked_at(cals)
    reach = float(np.median([np.linalg.norm(c.center - focus) for c in cals]))
    half = float(np.clip(0.6 * reach, 1000.0, 4000.0))
    voxel = 2 * half / cells
    axis = (np.arange(cells) + 0.5) * voxel - half
    ii = np.stack(np.meshgrid(*[np.arange(cells)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = focus + np.stack([axis[ii[:, 0]], axis[ii[:, 1]], axis[ii[:, 2]]], -1)
    up = world_up(cals)
    e1 = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    plane = np.stack([centres @ e1, centres @ np.cross(up, e1)], axis=1)
    return Grid(centres=centres, index=ii, cells=cells, voxel=voxel, focus=focus, reach=reach,
                plane=plane, height=centres @ up, axes=np.stack([e1, np.cross(up, e1), up]))


def world_up(cals: list[Calibration]) -> np.ndarray:
    """Unit world vector pointing up: minus the mean of the cameras' image-down axes (videos
    show people upright, so each camera's image y axis points roughly down the world)."""
    down = np.mean([cal.R[1] for cal in cals], axis=0)
    return -down / np.linalg.norm(down)


def _centre_prior(positions: np.ndarray, centre: np.ndarray, reach: float) -> np.ndarray:
    """Weight of candidates by distance to where the cameras aim: the rig is set up around its
    subject, so of two people the one nearer the middle is the subject (1 there, 0.6 at a
    quarter of the camera distance, 0.14 at half of it)."""
    d = np.linalg.norm(positions - centre, axis=-1)
    return np.exp(-0.5 * (d / (0.25 * reach)) ** 2)


def _mask_lookup(cal: Calibration, points: np.ndarray, scale: float, shape: tuple[int, int]
                 ) -> np.ndarray:
    """Flat mask index of each point's projection, -1 where it is behind or outside the view."""
    h, w = shape
    in_front = cal.to_camera(points)[:, 2] > 1.0
    uv = cal.project(points) * scale
    with np.errstate(invalid="ignore"):
        inside = in_front & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    flat = np.full(len(points), -1)
    u = np.floor(uv[inside, 0]).astype(int)
    v = np.floor(uv[inside, 1]).astype(int)
    flat[inside] = v * w + u
    return flat


# -- rig method --------------------------------------------------------------------------------
def _voxel_candidates(occupied: np.ndarray, grid: Grid) -> tuple[Candidates, np.ndarray]:
    """3D blobs of occupied voxels (parts within two voxels of each other joined, people
    standing apart split, see _split_people) and the blob label of every voxel (0 = none)."""
    n = grid.cells
    volume = np.zeros((n, n, n), dtype=bool)
    volume[tuple(grid.index[occupied].T)] = True
    joined, _ = ndimage.label(ndimage.binary_dilation(volume, iterations=2))
    labels = _split_people(np.where(occupied, joined[tuple(grid.index.T)], 0), grid)
    kept = np.unique(labels[labels > 0])
    remap = np.zeros(labels.max() + 1, dtype=int)
    remap[kept] = np.arange(1, len(kept) + 1)
    labels = remap[labels]
    count = len(kept)
    if count == 0:
        return Candidates(np.zeros((0, 3)), np.zeros(0)), labels
    sizes = np.bincount(labels, minlength=count + 1)[1:].astype(float)
    sums = np.stack([np.bincount(labels, grid.centres[:, k], count + 1)[1:] for k in range(3)], 1)
    return Candidates(sums / sizes[:, None], sizes), labels


def _split_people(labels: np.ndarray, grid: Grid) -> np.ndarray:
    """Blobs holding several people standing apart, split: a blob's voxels counted on the
    floor plane (smoothed by PERSON_SIGMA) peak once per standing body (a torso and legs are a
    tall column; arms and ghost slivers are thin), so each peak of at least a third of the
    highest, PERSON_SPACING from any higher one, whose nearest voxels stand at least
    PERSON_MIN_HEIGHT tall, starts a blob of the voxels nearest to it."""
    out = labels.copy()
    top = labels.max()
    spacing = max(3, int(round(PERSON_SPACING / grid.voxel)) | 1)
    for k in range(1, labels.max() + 1):
        idx = np.flatnonzero(labels == k)
        if len(idx) < MIN_SPLIT_VOXELS:
            continue
        floor = grid.plane[idx]
        lo = floor.min(axis=0)
        cell = np.floor((floor - lo) / grid.voxel).astype(int)
        counts = np.zeros(cell.max(axis=0) + 1)
        np.add.at(counts, tuple(cell.T), 1.0)
        counts = ndimage.gaussian_filter(counts, PERSON_SIGMA / grid.voxel, mode="constant")
        peaks = (counts == ndimage.maximum_filter(counts, size=spacing, mode="constant")) & (
            counts >= counts.max() / 3)
        modes = (np.argwhere(peaks) + 0.5) * grid.voxel + lo
        if len(modes) < 2:
            continue
        nearest = ((floor[:, None, :] - modes[None]) ** 2).sum(-1).argmin(axis=1)
        height = grid.height[idx]
        tall = [m for m in range(len(modes)) if (nearest == m).any()
                and np.ptp(height[nearest == m]) >= PERSON_MIN_HEIGHT]
        if len(tall) < 2:  # a lunging leg or an arm is not a second person
            continue
        modes = modes[tall]
        nearest = ((floor[:, None, :] - modes[None]) ** 2).sum(-1).argmin(axis=1)
        for m in range(1, len(modes)):
            top += 1
            out[idx[nearest == m]] = top
    return out


SUBSAMPLE = np.array([[x, y, z] for x in (-.25, .25) for y in (-.25, .25) for z in (-.25, .25)])


def _view_box(cal: Calibration, centres: np.ndarray, voxel: float, mask: np.ndarray,
              scale: float, hidden: np.ndarray) -> np.ndarray:
    """Box (4,) in native pixels of the blob as this view sees it: the projections of points
    inside the blob's voxels that land on this view's own foreground. The carved hull is
    larger than the body (ghost volume between the views' silhouettes); its points that fall
    on this view's foreground are the body as this view sees it. Voxels the other views carved
    although this one saw background there (`hidden`: this view was the one miss) are parts it
    cannot see (occluded): when they are more than HIDDEN_FRACTION of the blob they are added,
    so the box covers the whole body (amodal); fewer are the usual holes and ghosts."""
    pts = (centres[:, None, :] + SUBSAMPLE[None] * voxel).reshape(-1, 3)
    pts = pts[cal.to_camera(pts)[:, 2] > 1.0]
    if not len(pts):
        return np.full(4, np.nan)
    uv = cal.project(pts)
    h, w = mask.shape
    px = np.floor(uv * scale).astype(int)
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    on = np.zeros(len(uv), dtype=bool)
    on[inside] = mask[px[inside, 1], px[inside, 0]]
    if on.sum() < 4:  # this view does not see the blob as foreground (occluded): the hull
        on[:] = True
    uv = uv[on]
    if hidden.mean() > HIDDEN_FRACTION:
        behind = cal.to_camera(centres[hidden])[:, 2] > 1.0
        uv = np.concatenate([uv, cal.project(centres[hidden][behind])])
    pad = 0.5 / scale  # half a mask pixel
    return np.array([uv[:, 0].min() - pad, uv[:, 1].min() - pad,
                     uv[:, 0].max() + pad, uv[:, 1].max() + pad])


def rig_boxes(seq: MultiviewSequence, progress: ProgressFn | None = None,
              cells: int = GRID_CELLS) -> SubjectBoxes:
    """Subject boxes from the foreground carved through every calibrated view (module doc)."""
    if not seq.is_calibrated:
        raise UserInputError(seq.path, "the rig method needs a calibration for every camera")
    C, T = len(seq.cameras), seq.num_frames
    cals = [cam.calibration for cam in seq.cameras]
    grid = carving_grid(cals, cells)
    tick = _ticker(progress, C * T + T)
    lookups, masks, tight, scales, colours = [], [], [], [], []
    for c in range(C):
        colours.append([])
        m, scale = foreground_masks(seq, c, progress=tick, colours=colours[-1])
        colours[-1] = np.stack(colours[-1]).reshape(T, -1)
        tight.append(m)
        scales.append(scale)
        # carving tolerates calibration error and thin limbs: a voxel touching the mask counts
        m = np.stack([cv2.dilate(f.astype(np.uint8), np.ones((3, 3), np.uint8)) for f in m])
        masks.append(m.reshape(T, -1).astype(bool))
        lookups.append(_mask_lookup(cals[c], grid.centres, scale, m.shape[1:]))
    seen = np.stack([lk >= 0 for lk in lookups])  # (C, V)
    chain, frames, labels = _carve_and_follow(seq, grid, masks, lookups, seen, tick)
    # second look: people the first carving merged are told apart by colour (module doc)
    centre = _subject_floor_track(chain, frames, labels, grid, seq.fps)
    subject_like = _appearance_masks(chain, frames, labels, masks, lookups, colours,
                                     [m.shape[1:] for m in tight], grid, centre)
    if subject_like is not None:
        carved = [lab > 0 for lab in labels]  # every voxel the first carving occupied
        chain, frames, labels = _carve_and_follow(seq, grid, subject_like, lookups, seen, None)
        # the boxes too: foreground of the others' colours is not the subject's outline, nor
        # is the thin rim of blended colours it leaves around them
        tight = [_opened(m & s.reshape(m.shape)) for m, s in zip(tight, subject_like)]
    raw = np.full((C, T, 4), np.nan)
    support = np.zeros(T)
    centre = _subject_floor_track(chain, frames, labels, grid, seq.fps)
    other = np.full((T, 2), np.nan)
    if subject_like is not None:
        other = _other_body_track(carved, masks, subject_like, lookups, seen, grid, centre,
                                  seq.fps)
    parts = {}
    for t in np.flatnonzero(chain >= 0):
        member = labels[t] == chain[t] + 1
        if np.isfinite(centre[t]).all():
            others = other[t][None] if np.isfinite(other[t]).all() else None
            member = _subject_part(labels[t] > 0, member, centre[t], grid, others)
        parts[t] = member
    floor = _floor_level(list(parts.values()), grid)
    for t, member in parts.items():
        voxels = grid.centres[member]
        support[t] = frames[t].supports[chain[t]]
        feet = _feet(centre[t], floor, grid)
        for c in range(C):
            hidden = seen[c][member] & ~masks[c][t][np.maximum(lookups[c][member], 0)]
            box = _view_box(cals[c], voxels, grid.voxel, tight[c][t], scales[c], hidden)
            raw[c, t] = _down_to(box, cals[c], feet)
    return _finish(seq, raw, support)


def _floor_level(parts: list[np.ndarray], grid: Grid) -> float:
    """Height (mm along up) of the floor the subject stands on: the lowest its voxels (V,) bool
    reach in a quarter of the frames (FLOOR_QUANTILE of each frame's lowest voxel): a ghost
    voxel below the floor in a few frames does not sink it, frames that lost the feet do not
    lift it; NaN without any."""
    lows = [grid.height[part].min() for part in parts if part.any()]
    return float(np.quantile(lows, FLOOR_QUANTILE, method="lower")) if lows else float("nan")


def _feet(centre: np.ndarray, floor: float, grid: Grid) -> np.ndarray:
    """World points (5, 3) where a standing subject's feet are: on the floor under its body's
    floor position `centre` (2,) and FOOT_SPREAD around it; (0, 3) when either is unknown.

    The carving often loses the lower legs and feet (a foot that stands still through most of
    the recording is in the median background; its shadow is removed; thin shins miss the
    coarse voxels), so each view's box is stretched down to them."""
    if not (np.isfinite(centre).all() and np.isfinite(floor)):
        return np.zeros((0, 3))
    spread = FOOT_SPREAD * np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]])
    return grid.world(centre + spread, floor)


def _down_to(box: np.ndarray, cal: Calibration, points: np.ndarray) -> np.ndarray:
    """The box (4,) with its bottom lowered to the lowest projection of the world points
    (N, 3) in front of the camera (its sides stay the body's: a foot is under the body, and
    the floor-position estimate is a voxel or two off); a missing box stays missing."""
    points = points[cal.to_camera(points)[:, 2] > 1.0] if len(points) else points
    if not len(points) or not np.isfinite(box).all():
        return box
    return np.r_[box[:3], max(box[3], cal.project(points)[:, 1].max())]


def _subject_part(occupied: np.ndarray, member: np.ndarray, centre: np.ndarray, grid: Grid,
                  others: np.ndarray | None = None) -> np.ndarray:
    """The subject's voxels (V,) bool: those of its blob within PERSON_REACH of its floor
    position (arms and legs swing out that far) and nearer to it than to any other body.

    Other bodies are the floor-count peaks (_floor_modes) of the occupied voxels further than
    OTHER_GAP from the subject whose cores (voxels within CORE_RADIUS of the peak) stand
    PERSON_MIN_HEIGHT tall: a second person close by, not a ghost sliver or the subject's own
    swinging arm; and the floor positions `others` (K, 2) of people known otherwise (one who
    barely moves carves only in part: _other_body_track)."""
    dist = np.linalg.norm(grid.plane - centre, axis=1)
    mine = member & (dist <= PERSON_REACH)
    rest = occupied & (dist > OTHER_GAP)
    bodies = [] if others is None else list(others)
    for mode in _floor_modes(rest, grid).positions:
        body = rest & (np.linalg.norm(grid.plane - mode, axis=1) <= CORE_RADIUS)
        if body.any() and np.ptp(grid.height[body]) >= PERSON_MIN_HEIGHT:
            bodies.append(mode)
    for body in bodies:
        mine &= dist < np.linalg.norm(grid.plane - body, axis=1)
    return mine


def _other_body_track(
    carved: list[np.ndarray], masks: list[np.ndarray], subject_like: list[np.ndarray],
    lookups: list[np.ndarray], seen: np.ndarray, grid: Grid, centre: np.ndarray, fps: float,
) -> np.ndarray:
    """(T, 2) floor position of another person near the subject (NaN where none is seen).

    Someone who barely moves is in the median background: only their moving head, arms and
    clothes carve, a column shorter than PERSON_MIN_HEIGHT that _subject_part would leave
    within the subject's reach. The colour pass knows their colours: the voxels the first
    carving occupied (`carved`, (V,) bool per frame, from the views' (T, pixels) `masks`) that
    land on the others' colours (foreground that `subject_like` dropped) in at least two views
    are theirs. Per frame their floor-count peaks further than
    OTHER_GAP from the subject's floor position `centre` (T, 2) with OTHER_MIN_VOXELS of them
    within CORE_RADIUS are candidates; the person is the chain of candidates over the whole
    sequence (best_chain: a walking pace), so a stray peak of one frame does not cut the
    subject."""
    T = len(centre)
    candidates = []
    for t in range(T):
        foreign = _votes([m[t] & ~s[t] for m, s in zip(masks, subject_like)], lookups, seen)
        theirs = carved[t] & (foreign >= 2)
        peaks = _floor_modes(theirs, grid).positions
        floor = grid.plane[theirs]
        near = np.array([np.sum(np.linalg.norm(floor - p, axis=1) <= CORE_RADIUS) for p in peaks],
                        dtype=float)
        with np.errstate(invalid="ignore"):
            keep = (np.linalg.norm(peaks - centre[t], axis=1) > OTHER_GAP) & (
                near >= OTHER_MIN_VOXELS)
        candidates.append(Candidates(peaks[keep], near[keep]))
    pick = best_chain(candidates, sigma0=grid.voxel, speed=WALK_SPEED / fps)
    track = np.full((T, 2), np.nan)
    for t in np.flatnonzero(pick >= 0):
        track[t] = candidates[t].positions[pick[t]]
    return track


def _floor_modes(voxels: np.ndarray, grid: Grid) -> Candidates:
    """Standing bodies in a set of voxels (V,) bool: peaks of their floor-plane counts smoothed
    by PERSON_SIGMA, at least a quarter of the highest, PERSON_SPACING apart; a peak's support
    is its smoothed count."""
    floor = grid.plane[voxels]
    if not len(floor):
        return Candidates(np.zeros((0, 2)), np.zeros(0))
    lo = floor.min(axis=0) - 3 * PERSON_SIGMA
    cell = np.floor((floor - lo) / grid.voxel).astype(int)
    counts = np.zeros(cell.max(axis=0) + 1 + int(3 * PERSON_SIGMA / grid.voxel))
    np.add.at(counts, tuple(cell.T), 1.0)
    counts = ndimage.gaussian_filter(counts, PERSON_SIGMA / grid.voxel, mode="constant")
    spacing = max(3, int(round(PERSON_SPACING / grid.voxel)) | 1)
    peaks = (counts == ndimage.maximum_filter(counts, size=spacing, mode="constant")) & (
        counts >= counts.max() / 4)
    at = np.argwhere(peaks)
    return Candidates((at + 0.5) * grid.voxel + lo, counts[tuple(at.T)])


def _subject_floor_track(chain: np.ndarray, frames: list[Candidates], labels: list[np.ndarray],
                         grid: Grid, fps: float) -> np.ndarray:
    """(T, 2) floor-plane position of the subject's body (NaN where no blob was chosen).

    A blob holding the subject and a second person close by has its centroid between them;
    the subject is the standing body (floor-count peak, _floor_modes) of the chosen blobs that
    is near where the cameras aim and moves least (best_chain over the peaks)."""
    T = len(frames)
    modes = []
    focus = grid.plane.mean(axis=0)  # the cube of voxels is centred on the focus
    for t in range(T):
        if chain[t] < 0:
            modes.append(Candidates(np.zeros((0, 2)), np.zeros(0)))
            continue
        m = _floor_modes(labels[t] == chain[t] + 1, grid)
        m.supports = m.supports * _centre_prior(m.positions, focus, grid.reach)
        modes.append(m)
    pick = best_chain(modes, sigma0=grid.voxel, speed=WALK_SPEED / fps)
    track = np.full((T, 2), np.nan)
    for t in np.flatnonzero(pick >= 0):
        track[t] = modes[t].positions[pick[t]]
    return track


def _votes(frame_masks: list[np.ndarray], lookups: list[np.ndarray], seen: np.ndarray
           ) -> np.ndarray:
    """(V,) how many views see each voxel on their (pixels,) mask of one frame."""
    votes = np.zeros(seen.shape[1], dtype=int)
    for c, mask in enumerate(frame_masks):
        votes += seen[c] & mask[np.maximum(lookups[c], 0)]
    return votes


def _carved(votes: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(V,) bool: voxels on the foreground of every view that sees them (one miss allowed with
    4+ views), and of at least 3 views (all, with fewer)."""
    C = len(seen)
    n_seen = seen.sum(0)
    misses = 1 if C >= 4 else 0
    return (votes >= n_seen - misses) & (votes >= min(C, 3))


def _carve_and_follow(
    seq: MultiviewSequence, grid: Grid, masks: list[np.ndarray], lookups: list[np.ndarray],
    seen: np.ndarray, tick: Callable[[], None] | None,
) -> tuple[np.ndarray, list[Candidates], list[np.ndarray]]:
    """Carve every frame with the views' (T, pixels) masks, blobs as candidates, the chain."""
    frames, labels = [], []
    for t in range(seq.num_frames):
        occupied = _carved(_votes([m[t] for m in masks], lookups, seen), seen)
        cand, lab = _voxel_candidates(occupied, grid)
        cand.supports = cand.supports * _centre_prior(cand.positions, grid.focus, grid.reach)
        frames.append(cand)
        labels.append(lab)
        if tick is not None:
            tick()
    # a centroid jitters by a couple of voxels as parts carve in and out; people walk < 2 m/s
    chain = best_chain(frames, sigma0=2 * grid.voxel, speed=WALK_SPEED / seq.fps)
    return chain, frames, labels


def _opened(masks: np.ndarray) -> np.ndarray:
    """(T, h, w) bool masks without parts thinner than 3 pixels (morphological opening)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    return np.stack([cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, kernel) for m in masks]
                    ).astype(bool)


def _footprint(voxels: np.ndarray, lookup: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(pixels,) bool: the mask pixels the voxels (V,) bool project onto, grown by 2 pixels
    (voxel centres fall a few pixels apart)."""
    hit = lookup[voxels]
    on = np.zeros(shape[0] * shape[1], np.uint8)
    on[hit[hit >= 0]] = 1
    return cv2.dilate(on.reshape(shape), np.ones((5, 5), np.uint8)).ravel() > 0


def _appearance_masks(
    chain: np.ndarray, frames: list[Candidates], labels: list[np.ndarray],
    masks: list[np.ndarray], lookups: list[np.ndarray], colours: list[np.ndarray],
    shapes: list[tuple[int, int]], grid: Grid, centre: np.ndarray,
) -> list[np.ndarray] | None:
    """Per view, the carving masks without the foreground whose colour is the others'.

    The subject's colours are those of the foreground its body's core projects onto (the
    blob's voxels within CORE_RADIUS of the subject's floor position `centre` (T, 2), or the
    whole blob where it has none) in the frames where the blob is not larger than usual (a blob
    that swallowed a second person is larger); the others' are the foreground of those frames
    that no voxel of the blob within PERSON_REACH projects onto (limbs count for neither). A
    colour at least OTHER_ODDS times likelier among the others (and seen there
    OTHER_MIN_PIXELS times) is dropped from the masks. None when no frame has a blob.
    """
    chosen = np.flatnonzero(chain >= 0)
    if not len(chosen):
        return None
    sizes = np.array([frames[t].supports[chain[t]] for t in chosen])
    clean = chosen[sizes <= np.median(sizes)]
    out = []
    for c in range(len(masks)):
        subject = np.zeros(4096)
        others = np.zeros(4096)
        for t in clean:
            fg = masks[c][t]
            member = labels[t] == chain[t] + 1
            near = member
            if np.isfinite(centre[t]).all():
                dist = np.linalg.norm(grid.plane - centre[t], axis=1)
                near = member & (dist <= PERSON_REACH)
                member = member & (dist <= CORE_RADIUS)
            on = _footprint(member, lookups[c], shapes[c]) & fg
            np.add.at(subject, colours[c][t][on], 1.0)
            np.add.at(others, colours[c][t][fg & ~_footprint(near, lookups[c], shapes[c])], 1.0)
        p_subject = (subject + 1.0) / (subject.sum() + 4096.0)
        p_others = (others + 1.0) / (others.sum() + 4096.0)
        foreign = (p_others >= OTHER_ODDS * p_subject) & (others >= OTHER_MIN_PIXELS)
        out.append(masks[c] & ~foreign[colours[c]])
    return out


# -- tracked method (no calibration) ------------------------------------------------------------
def _blob_candidates(mask: np.ndarray) -> tuple[Candidates, np.ndarray]:
    """2D blobs of a mask (parts a few pixels apart joined): centres, areas, boxes (N, 4)."""
    joined = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8))
    n, labels = cv2.connectedComponents(joined, connectivity=8)
    labels = np.where(mask, labels, 0)
    boxes, centres, areas = [], [], []
    for k in range(1, n):
        ys, xs = np.nonzero(labels == k)
        if len(xs) < 4:
            continue
        boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        centres.append((xs.mean(), ys.mean()))
        areas.append(len(xs))
    if not boxes:
        return Candidates(np.zeros((0, 2)), np.zeros(0)), np.zeros((0, 4))
    return Candidates(np.array(centres, float), np.array(areas, float)), np.array(boxes, float)


def tracked_boxes(seq: MultiviewSequence, progress: ProgressFn | None = None) -> SubjectBoxes:
    """Per camera: the most consistent chain of foreground blobs over time (module doc)."""
    C, T = len(seq.cameras), seq.num_frames
    tick = _ticker(progress, C * T)
    raw = np.full((C, T, 4), np.nan)
    supports = np.zeros((C, T))
    for c in range(C):
        masks, scale = foreground_masks(seq, c, progress=tick)
        per_frame = [_blob_candidates(m) for m in masks]
        side = max(masks.shape[1:])
        middle = np.array([masks.shape[2] / 2, masks.shape[1] / 2])
        for cand, _ in per_frame:
            cand.supports = cand.supports * _centre_prior(cand.positions, middle, 2.0 * side)
        chain = best_chain([cand for cand, _ in per_frame], sigma0=0.03 * side,
                           speed=0.01 * side)
        for t in np.flatnonzero(chain >= 0):
            cand, boxes = per_frame[t]
            raw[c, t] = boxes[chain[t]] / scale
            supports[c, t] = cand.supports[chain[t]]
    return _finish(seq, raw, supports)


# -- learned detector (optional) ----------------------------------------------------------------
def detector_boxes(seq: MultiviewSequence, progress: ProgressFn | None = None,
                   cache_dir: str | Path | None = None) -> SubjectBoxes:
    """MediaPipe's person per (camera, frame) (core/pose_detector.py, needs the detector extra).

    Its keypoints are kept in the keypoint store under `cache_dir` (default: the recording's
    cache/ folder) for the labelling assist, and reused when already there. MediaPipe sees one
    person per image: with a bystander it may box the wrong one; frames without a person are
    filled from their neighbours and flagged uncertain.
    """
    from .keypoint_store import compute_keypoints, keypoints_path
    from .pose_detector import MediaPipeDetector

    folder = Path(cache_dir) if cache_dir is not None else Path(seq.path) / "cache"
    with MediaPipeDetector() as detector:
        store = compute_keypoints(seq, keypoints_path(folder, seq), detector, progress=progress)
    raw = store.boxes.astype(np.float64)
    supports = np.where(np.isfinite(raw).all(axis=2), store.confidence.mean(axis=2), 0.0)
    return _finish(seq, raw, supports)


def subject_boxes(seq: MultiviewSequence, method: str, progress: ProgressFn | None = None,
                  cache_dir: str | Path | None = None) -> SubjectBoxes:
    """Boxes and uncertainty of one of the subject methods: "rig", "tracked" or "detector"."""
    if method == "rig":
        return rig_boxes(seq, progress)
    if method == "tracked":
        return tracked_boxes(seq, progress)
    if method == "detector":
        return detector_boxes(seq, progress, cache_dir)
    raise UserInputError(None, f"{method!r} is not a subject box method (rig, tracked, detector)")


def boxes_and_doubts(seq: MultiviewSequence, method: str = "auto",
                     progress: ProgressFn | None = None, cache_dir: str | Path | None = None
                     ) -> tuple[SubjectBoxes, str]:
    """Any BOX_METHODS method's boxes with its doubts, and the method used ("auto" resolved).

    The subject methods flag frames from their own evidence; the others ("gt", "file",
    "background", "full") have no such evidence and flag only frames without a box.
    """
    from .boxes import BOX_METHODS, SUBJECT_METHODS, choose_box_method, compute_boxes_with_method

    if method not in BOX_METHODS:
        raise UserInputError(None, f"unknown box method {method!r}; use one of {BOX_METHODS}")
    if method == "auto":
        method = choose_box_method(seq)
    if method in SUBJECT_METHODS:
        return subject_boxes(seq, method, progress, cache_dir), method
    boxes, used = compute_boxes_with_method(seq, method, progress)
    return SubjectBoxes(boxes, ~np.isfinite(boxes).all(axis=2)), used


# -- shared ------------------------------------------------------------------------------------
def _ticker(progress: ProgressFn | None, total: int) -> Callable[[], None]:
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(min(done[0], total), total)

    return tick


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (..., 4) boxes; NaN where either box is missing."""
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a + area_b - inter)


def _finish(seq: MultiviewSequence, raw: np.ndarray, support: np.ndarray) -> SubjectBoxes:
    """Smooth and fill each camera's raw boxes; flag frames the evidence does not back."""
    from .boxes import clip_boxes, smooth_and_fill

    C, T = raw.shape[:2]
    support = np.broadcast_to(support, (C, T))
    boxes = np.full((C, T, 4), np.nan)
    uncertain = np.ones((C, T), dtype=bool)
    for c, cam in enumerate(seq.cameras):
        raw_c = clip_boxes(raw[c], cam.width, cam.height)
        boxes[c] = clip_boxes(smooth_and_fill(raw_c, 5), cam.width, cam.height)
        found = np.isfinite(raw_c).all(axis=1)
        if not found.any():
            continue
        typical = np.median(support[c][found])
        agree = box_iou(raw_c, boxes[c]) >= 0.5
        uncertain[c] = ~found | (support[c] < SMALL_FRACTION * typical) | ~agree
    return SubjectBoxes(boxes=boxes, uncertain=uncertain)
