"""Training data: crop caches per sequence, labelled subset, multi-view batches, augmentation.

Batches depend only on (seed, step, rank): every step draws from its own RNG, so a background
thread can prefetch, and a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mcss_studio.core.joints import FLIP_PERMUTATION, ROOT
from mcss_studio.core.labels import LabelStore
from mcss_studio.core.model import DEFAULT_RAY_SIZE, RAY_DIM, canonical_frame


@dataclass
class SequenceData:
    """One multi-view sequence as the trainer sees it: crops per camera plus geometry.

    crops[c] is (T, S, S, 3) uint8 RGB (a memmap from the crop cache, or an array in tests);
    rotations/translations are world->camera (C, 3, 3) / (C, 3) mm, None when uncalibrated;
    joints3d is (T, 17, 3) mm world or None; rays[c] is (T, 3) float32 viewing-ray features of
    the crops (core.model.crop_rays), None when unknown (then the optical axis is assumed);
    keypoints2d[c] is (T, 17, 2) float32: joints3d projected into camera c's crops, as fractions
    of the crop side from its centre (x right, y down), None without 3D ground truth or
    calibration.
    """

    name: str
    subject: str
    crops: list[np.ndarray]
    camera_names: list[str]
    rotations: np.ndarray | None = None
    translations: np.ndarray | None = None
    joints3d: np.ndarray | None = None
    rays: list[np.ndarray] | None = None
    keypoints2d: list[np.ndarray] | None = None

    def ray_features(self, times: np.ndarray, cams: np.ndarray) -> np.ndarray:
        """(N, 3) ray features of frames `times` seen by cameras `cams`."""
        times = np.asarray(times, np.int64)
        if self.rays is None:
            out = np.zeros((len(times), RAY_DIM), np.float32)
            out[:, 2] = DEFAULT_RAY_SIZE
            return out
        return np.stack([self.rays[c][t] for t, c in zip(times, np.asarray(cams))]).reshape(
            -1, RAY_DIM).astype(np.float32)

    @property
    def num_frames(self) -> int:
        return int(self.crops[0].shape[0])

    @property
    def num_cameras(self) -> int:
        return len(self.crops)

    @property
    def crop_size(self) -> int:
        return int(self.crops[0].shape[1])

    def pose_cam(self, joints_world: np.ndarray, cams: np.ndarray) -> np.ndarray:
        """World joints (N, 17, 3) seen by cameras cams (N,) -> root-relative camera frame, mm."""
        if self.rotations is None or self.translations is None:
            raise ValueError(f"sequence {self.name} has no calibration for 3D targets")
        r = self.rotations[cams]
        x = np.einsum("nij,nkj->nki", r, joints_world) + self.translations[cams][:, None, :]
        return x - x[:, ROOT:ROOT + 1]


@dataclass(frozen=True)
class LabelledFrame:
    """A 3D label: (sequence name, synchronised frame, joints (17, 3) mm world). Where it came
    from (ground truth of chosen subjects, or the Studio's label store) does not matter here."""

    sequence: str
    frame: int
    joints3d: np.ndarray = field(compare=False)


def labels_from_ground_truth(
    sequences: Sequence[SequenceData], subjects: Sequence[str], every: int = 1
) -> list[LabelledFrame]:
    """Every `every`-th frame of the sequences of `subjects` that have 3D ground truth."""
    wanted = set(subjects)
    labels = []
    for s in sequences:
        if s.subject in wanted and s.joints3d is not None:
            for t in range(0, s.num_frames, max(1, every)):
                labels.append(LabelledFrame(s.name, t, s.joints3d[t]))
    return labels


def labels_from_store(path: str | os.PathLike[str]) -> tuple[list[LabelledFrame], dict]:
    """The labels of a Studio label store (frames with all joints in 3D), and what the run
    records about them: store path, revision, frames used, incomplete frames left out and the
    labelled subjects. Read in one transaction, so the revision is exactly that of the labels."""
    with LabelStore.open(path, read_only=True, create=False) as store:
        revision, stored = store.snapshot()
        where = str(store.path)
    labels = [LabelledFrame(lab.sequence, lab.frame, lab.joints3d)
              for lab in stored if lab.has_3d]
    subjects = sorted({lab.subject for lab in stored if lab.has_3d and lab.subject})
    return labels, {"path": where, "revision": revision, "frames": len(labels),
                    "incomplete": len(stored) - len(labels), "subjects": subjects}


@dataclass
class Batch:
    """One training step's inputs; index arrays say where every image came from."""

    mv_images: torch.Tensor  # uint8 (M, S, S, 3) multi-view images (may be empty)
    mv_seq: torch.Tensor  # (M,) index into the sequence list
    mv_time: torch.Tensor  # (M,) synchronised frame
    mv_cam: torch.Tensor  # (M,) camera index
    mv_flip: torch.Tensor  # (M,) bool, one per sequence (views and negatives agree)
    lab_images: torch.Tensor  # uint8 (L, S, S, 3)
    lab_pose_cam: torch.Tensor  # (L, 17, 3) mm, after flip
    lab_pose_canonical: torch.Tensor  # (L, 17, 3) mm
    lab_flip: torch.Tensor  # (L,) bool
    lab_ref: np.ndarray  # (L, 3) sequence index, frame, camera (for logs)
    aug: dict[str, torch.Tensor]  # per-image colour / scale / shift factors for all M + L images
    mv_rays: torch.Tensor | None = None  # (M, 3) viewing-ray features before augmentation
    lab_rays: torch.Tensor | None = None  # (L, 3)
    lab_rotation: torch.Tensor | None = None  # (L, 3, 3) body canonical frame -> camera
    lab_keypoints: torch.Tensor | None = None  # (L, 17, 2) in the crop, after the flip's swap


@dataclass
class SamplerConfig:
    sequences_per_batch: int = 4
    instants_per_sequence: int = 8
    views_per_instant: int = 2
    labelled_batch: int = 32
    color_jitter: float = 0.2
    scale_jitter: float = 0.1
    shift_jitter: float = 0.05
    flip: bool = True
    channel_shuffle: float = 0.0  # probability of permuting an image's RGB channels
    augment: bool = True
    multiview: bool = True  # False for the baseline: no unlabelled images are loaded at all
    instant_sampling: str = "uniform"  # or "window": see window_instants
    tau: int = 10  # the negative window the "window" sampling serves (TrainConfig.tau/tau_max)
    tau_max: int = 0


class BatchSampler:
    """Draws multi-view batches (few sequences x several instants x several views) and labelled
    batches; `batch(step)` is a pure function of (seed, step, rank)."""

    def __init__(
        self,
        sequences: Sequence[SequenceData],
        labels: Sequence[LabelledFrame],
        config: SamplerConfig,
        seed: int = 0,
        rank: int = 0,
        multiview_sequences: Sequence[int] | None = None,
    ) -> None:
        self.sequences = list(sequences)
        self.config = config
        self.seed = seed
        self.rank = rank
        index = {s.name: i for i, s in enumerate(self.sequences)}
        missing = sorted({lab.sequence for lab in labels} - set(index))
        if missing:
            raise ValueError(f"labels refer to unknown sequences {missing[:3]}")
        self.label_seq = np.array([index[lab.sequence] for lab in labels], dtype=np.int64)
        self.label_frame = np.array([lab.frame for lab in labels], dtype=np.int64)
        self.label_joints = (np.stack([lab.joints3d for lab in labels]).astype(np.float64)
                             if labels else np.zeros((0, 17, 3)))
        pool = range(len(self.sequences)) if multiview_sequences is None else multiview_sequences
        self.mv_pool = [i for i in pool if self.sequences[i].num_cameras >= 2]
        if config.multiview and not self.mv_pool:
            raise ValueError("multi-view training needs sequences with at least two cameras")

    def _rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, step, self.rank])

    def sample_multiview(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """(seq, time, cam, flip) arrays for a multi-view batch."""
        c = self.config
        n_seq = min(c.sequences_per_batch, len(self.mv_pool))
        chosen = rng.choice(self.mv_pool, size=n_seq, replace=False)
        seqs, times, cams, flips = [], [], [], []
        for s in chosen:
            data = self.sequences[s]
            k = min(c.instants_per_sequence, data.num_frames)
            v = min(c.views_per_instant, data.num_cameras)
            if c.instant_sampling == "window":
                instants = window_instants(rng, data.num_frames, k, c.tau, c.tau_max)
            else:
                instants = rng.choice(data.num_frames, size=k, replace=False)
            # one mirror decision per sequence, not per instant: when the anchor and its
            # in-sequence negatives could differ in it, the embedding learns "mirrored or not"
            # (a shortcut no pose needs) and the triplet loss falls without learning any pose
            flip = bool(c.augment and c.flip and rng.random() < 0.5)
            for t in instants:
                for cam in rng.choice(data.num_cameras, size=v, replace=False):
                    seqs.append(s)
                    times.append(t)
                    cams.append(cam)
                    flips.append(flip)
        return (np.array(seqs, np.int64), np.array(times, np.int64), np.array(cams, np.int64),
                np.array(flips, bool))

    def gather(self, seqs: np.ndarray, times: np.ndarray, cams: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) crops, read from the caches."""
        if len(seqs) == 0:
            size = self.sequences[0].crop_size
            return np.zeros((0, size, size, 3), np.uint8)
        return np.stack([self.sequences[s].crops[c][t] for s, t, c in zip(seqs, times, cams)])

    def rays(self, seqs: np.ndarray, times: np.ndarray, cams: np.ndarray) -> np.ndarray:
        """(N, 3) float32 viewing-ray features of the gathered crops."""
        out = np.zeros((len(seqs), RAY_DIM), np.float32)
        for s in np.unique(seqs):
            rows = np.flatnonzero(seqs == s)
            out[rows] = self.sequences[s].ray_features(times[rows], cams[rows])
        return out

    def batch(self, step: int) -> Batch:
        c = self.config
        rng = self._rng(step)
        if c.multiview:
            seqs, times, cams, flips = self.sample_multiview(rng)
        else:
            seqs = times = cams = np.zeros(0, np.int64)
            flips = np.zeros(0, bool)
        n_lab = min(c.labelled_batch, len(self.label_seq))
        pick = rng.choice(len(self.label_seq), size=n_lab, replace=False) if n_lab else []
        l_seq = self.label_seq[pick]
        l_time = self.label_frame[pick]
        l_cam = np.array([rng.integers(self.sequences[s].num_cameras) for s in l_seq], np.int64)
        l_flip = (rng.random(n_lab) < 0.5) & c.augment & c.flip
        pose = np.zeros((n_lab, 17, 3))
        for i, s in enumerate(l_seq):
            joints = self.label_joints[pick[i]][None]
            pose[i] = self.sequences[s].pose_cam(joints, l_cam[i:i + 1])[0]
        pose[l_flip] = flip_pose(pose[l_flip])
        rotation, canonical = canonical_frame(pose) if n_lab else (np.zeros((0, 3, 3)), pose)
        keypoints = self.label_keypoints(l_seq, l_time, l_cam, l_flip)
        n_all = len(seqs) + n_lab
        aug = random_augmentation(rng, n_all, c)
        return Batch(
            mv_images=torch.from_numpy(self.gather(seqs, times, cams)),
            mv_seq=torch.from_numpy(seqs), mv_time=torch.from_numpy(times),
            mv_cam=torch.from_numpy(cams), mv_flip=torch.from_numpy(flips),
            lab_images=torch.from_numpy(self.gather(l_seq, l_time, l_cam)),
            lab_pose_cam=torch.from_numpy(pose).float(),
            lab_pose_canonical=torch.from_numpy(canonical).float(),
            lab_flip=torch.from_numpy(l_flip),
            lab_ref=np.stack([l_seq, l_time, l_cam], axis=1) if n_lab else np.zeros((0, 3), int),
            aug=aug,
            mv_rays=torch.from_numpy(self.rays(seqs, times, cams)),
            lab_rays=torch.from_numpy(self.rays(l_seq, l_time, l_cam)),
            lab_rotation=torch.from_numpy(rotation).float(),
            lab_keypoints=None if keypoints is None else torch.from_numpy(keypoints),
        )

    def label_keypoints(self, seqs: np.ndarray, times: np.ndarray, cams: np.ndarray,
                        flips: np.ndarray) -> np.ndarray | None:
        """(L, 17, 2) 2D targets of the labelled crops, left and right swapped where the crop
        is mirrored (the mirroring of x itself is `augment_keypoints`'s, with the other
        geometric jitter); None when any labelled sequence lacks them."""
        if len(seqs) == 0 or any(self.sequences[s].keypoints2d is None for s in seqs):
            return None
        out = np.stack([self.sequences[s].keypoints2d[c][t]
                        for s, t, c in zip(seqs, times, cams)]).astype(np.float32)
        out[flips] = out[flips][:, FLIP_PERMUTATION]
        return out


def window_instants(
    rng: np.random.Generator, num_frames: int, k: int, tau: int, tau_max: int = 0
) -> np.ndarray:
    """k distinct frames of one sequence laid as a comb around a random centre, so that every
    instant has several in-sequence negatives (tau <= |dt| <= tau_max) among the others.

    Gaps between neighbours are drawn from [tau, max(tau, tau_max // 2)] (tau_max = 0: up to
    2 tau), so neighbours and second neighbours both lie inside the window: with k >= 3 each
    instant has at least 2 candidate negative instants, inner ones up to 4. Uniform draws give
    most anchors none (with k = 4 of 100 frames and a 10..20 window, about 1 in 3 has one).
    A sequence too short for the comb gets k evenly spaced frames instead.
    """
    k = min(k, num_frames)
    if k <= 1:
        return rng.choice(num_frames, size=k, replace=False)
    widest = max(tau, tau_max // 2) if tau_max else 2 * tau
    gaps = rng.integers(tau, widest + 1, size=k - 1)
    span = int(gaps.sum())
    if span > num_frames - 1:
        return np.unique(np.linspace(0, num_frames - 1, k).round().astype(np.int64))
    start = int(rng.integers(0, num_frames - span))
    return start + np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64)


def flip_pose(pose: np.ndarray) -> np.ndarray:
    """Mirror camera-frame poses for a horizontally flipped image: negate x, swap left/right."""
    out = pose[:, FLIP_PERMUTATION].copy()
    out[..., 0] *= -1
    return out


def random_augmentation(rng: np.random.Generator, n: int, c: SamplerConfig) -> dict:
    """Per-image factors. Colour, small scale and shift keep root-relative 3D labels valid."""
    if not c.augment:
        ones = torch.ones(n)
        return {"brightness": ones, "contrast": ones, "saturation": ones, "scale": ones,
                "shift": torch.zeros(n, 2)}

    def jitter(amount: float, size: int | tuple = n) -> torch.Tensor:
        return torch.from_numpy(1.0 + rng.uniform(-amount, amount, size)).float()

    out = {"brightness": jitter(c.color_jitter), "contrast": jitter(c.color_jitter),
           "saturation": jitter(c.color_jitter), "scale": jitter(c.scale_jitter),
           "shift": torch.from_numpy(rng.uniform(-c.shift_jitter, c.shift_jitter, (n, 2))).float()}
    if c.channel_shuffle > 0:  # drawn only when asked, so other settings keep their streams
        shuffle = rng.random(n) < c.channel_shuffle
        perms = np.array([rng.permutation(3) if s else np.arange(3) for s in shuffle])
        out["channels"] = torch.from_numpy(perms.astype(np.int64))
    return out


def augment_rays(rays: torch.Tensor, flip: torch.Tensor, aug: dict) -> torch.Tensor:
    """Ray features of the crops as `augment_images` re-samples them: the shift moves the centre
    by shift * side, the scale divides the side, a flip mirrors x (as it mirrors the pose)."""
    rays = rays.float().clone()
    side = rays[:, 2].clone()
    rays[:, :2] += aug["shift"].to(rays.device) * side[:, None]
    rays[:, 2] = side / aug["scale"].to(rays.device)
    rays[:, 0] *= 1.0 - 2.0 * flip.to(rays.device).float()
    return rays


def augment_keypoints(points: torch.Tensor, flip: torch.Tensor, aug: dict) -> torch.Tensor:
    """2D targets (N, J, 2), fractions of the crop side from its centre, moved as
    `augment_images` re-samples the crops: its grid reads the input at
    (sign * g / scale + 2 * shift) for output position g in [-1, 1], so a point u of the input
    lands at (u - shift) * scale, x mirrored by a flip."""
    scale = aug["scale"].to(points.device).float()[:, None, None]
    shift = aug["shift"].to(points.device).float()[:, None, :]
    out = (points.float() - shift) * scale
    sign = 1.0 - 2.0 * flip.to(points.device).float()
    out[..., 0] = out[..., 0] * sign[:, None]
    return out


def to_float_images(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> float (N, 3, S, S) in [0, 1] on device."""
    return images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)


def augment_images(images: torch.Tensor, flip: torch.Tensor, aug: dict) -> torch.Tensor:
    """Apply colour jitter, scale/shift jitter and horizontal flips to float (N, 3, S, S)."""
    device = images.device
    if "channels" in aug:  # clothing colour says nothing about the pose
        index = aug["channels"].to(device)[:, :, None, None].expand_as(images)
        images = torch.gather(images, 1, index)
    b = aug["brightness"].to(device)[:, None, None, None]
    c = aug["contrast"].to(device)[:, None, None, None]
    s = aug["saturation"].to(device)[:, None, None, None]
    gray = images.mean(dim=1, keepdim=True)
    x = gray + (images - gray) * s
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * c + mean) * b
    scale = aug["scale"].to(device)
    shift = aug["shift"].to(device)
    if not (torch.all(scale == 1) and torch.all(shift == 0) and not flip.any()):
        sign = 1.0 - 2.0 * flip.to(device).float()
        theta = torch.zeros(len(x), 2, 3, device=device)
        theta[:, 0, 0] = sign / scale
        theta[:, 1, 1] = 1.0 / scale
        theta[:, :, 2] = shift * 2
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return x.clamp_(0.0, 1.0)


class Prefetcher:
    """Produces `make(step)` for steps [start, stop) in a background thread, a few ahead."""

    def __init__(self, make: Callable[[int], Batch], start: int, stop: int, depth: int = 3) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make, start, stop), daemon=True)
        self._thread.start()

    def _run(self, make: Callable[[int], Batch], start: int, stop: int) -> None:
        for step in range(start, stop):
            if self._stop.is_set():
                return
            try:
                item = (step, make(step), None)
            except Exception as exc:  # surfaced in the consumer thread
                item = (step, None, exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return

    def __iter__(self) -> Iterator[tuple[int, Batch]]:
        while True:
            if not self._thread.is_alive() and self._queue.empty():
                return
            try:
                step, batch, exc = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if exc is not None:
                raise exc
            yield step, batch

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
