"""MCSS network: ResNet encoder, L2-normalised embedding, canonical-pose head, orientation head.

The embedding is trained to be view-invariant, so it cannot know the camera. The pose head reads
the embedding and predicts joints in a body-canonical frame (root at origin, axes from the hips and
the spine); the orientation head reads the encoder features (which do see the viewpoint) and gives
the rotation canonical -> camera. Camera-frame pose = R @ canonical. Plain PyTorch, no torchvision.

With ray_input, the orientation head also reads the crop's viewing ray (where the crop sat in the
image, from the crop square and the intrinsics) and predicts the rotation relative to that ray,
since the crop alone cannot show it. Callers without geometry get the optical axis.

With pose_direct (an option measured for issue 10, off by default) one head regresses the
camera-frame pose from the embedding plus free view dimensions instead; the rotation and the
canonical pose are then read off the predicted joints, so the outputs are the same kinds and
stay consistent (pose_cam = rotation @ canonical) either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .joints import NUM_JOINTS

ARCHITECTURES = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
                 "resnet50": ("bottleneck", (3, 4, 6, 3))}
POSE_SCALE_MM = 1000.0  # heads work in metres, the API speaks millimetres
IMAGE_MEAN = 0.45
IMAGE_STD = 0.25
RAY_DIM = 3  # (x, y) of the normalised viewing ray K^-1 [u, v, 1] of the crop centre, side / f
DEFAULT_RAY_SIZE = 0.4  # angular size assumed when a caller gives no rays (optical axis)
ORIENTATION_GRID = 2  # orientation_spatial: features pooled to a grid x grid layout
RAY_FEATURE_SCALE = 4.0  # rays are ~0.1-0.5; scaled towards the features' unit range
KEYPOINT_STAGE = 1  # keypoint_spatial: heat maps from the second stage (stride 8)
# encoder stems and the factor by which each shrinks the crop before the first stage:
# resnet = 7x7 stride-2 conv + 3x3 stride-2 max pool (ImageNet ResNet), nopool = the same conv
# without the pool, small = one 3x3 stride-1 conv (CIFAR ResNets): the smaller the factor, the
# more of a 1-3 px wide limb survives into the stages, at a higher cost per step
STEM_STRIDES = {"resnet": 4, "nopool": 2, "small": 1}


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network; stored in every checkpoint."""

    arch: str = "resnet18"
    width: int = 64  # channels of the first stage (64 = the standard ResNet)
    embedding_dim: int = 128
    pose_hidden: int = 512
    orientation_hidden: int = 256
    num_joints: int = NUM_JOINTS
    # the pose head reads the embedding before (False) or after (True) L2 normalisation
    pose_on_unit_embedding: bool = True
    # the orientation head also reads the crop's viewing ray (see crop_rays) and its rotation is
    # taken relative to that ray; False = features only (checkpoints from before rays existed)
    ray_input: bool = False
    # the orientation head reads a 2x2 grid of pooled features instead of the global average:
    # global pooling throws away the layout that tells front from back, and the metric loss
    # pushes the pooled features towards view invariance
    orientation_spatial: bool = False
    # a linear head on the pooled features predicts each joint's 2D position in the crop
    # (trained from the 3D labels projected into the labelled views): it makes the encoder
    # localise the limbs, where 3D regression alone fitted the labelled subjects' appearance
    # and predicted new subjects worse than a constant pose (README, issue 10)
    keypoint_head: bool = False
    # the embedding head reads the same 2x2 grid of pooled features: a global average keeps
    # which limb features are present but not where they are, and the pose is read from the
    # embedding
    embedding_spatial: bool = False
    # with keypoint_head: each joint's 2D position is the soft-argmax of its own heat map, a 1x1
    # convolution of the second stage's features (stride 8), instead of a linear map of the
    # pooled features; the gradient then says where each joint is, in the layers that see it
    keypoint_spatial: bool = False
    # encoder stem (STEM_STRIDES); "resnet" for checkpoints from before the choice existed
    stem: str = "resnet"
    # the pose head regresses the camera-frame pose directly from the embedding plus free
    # view dimensions (a layer of orientation_hidden units on the encoder features and the
    # ray) instead of canonical pose x predicted rotation; the rotation and canonical pose are
    # then read off the predicted joints (body_frame), so every output stays consistent
    pose_direct: bool = False

    def validate(self) -> None:
        """Raise ValueError on values that cannot build a sane network (also guards checkpoints)."""
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown arch {self.arch!r}, expected one of {sorted(ARCHITECTURES)}")
        if self.stem not in STEM_STRIDES:
            raise ValueError(f"unknown stem {self.stem!r}, expected one of {sorted(STEM_STRIDES)}")
        for name, low, high in (("width", 4, 256), ("embedding_dim", 2, 4096),
                                ("pose_hidden", 8, 8192), ("orientation_hidden", 8, 8192),
                                ("num_joints", 2, 256)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        for name in ("pose_on_unit_embedding", "ray_input", "orientation_spatial",
                     "keypoint_head", "embedding_spatial", "keypoint_spatial", "pose_direct"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")
        if self.pose_direct and self.num_joints != NUM_JOINTS:  # body_frame reads its joints
            raise ValueError(f"pose_direct needs the {NUM_JOINTS}-joint skeleton, "
                             f"got num_joints={self.num_joints}")

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)}")
        config = cls(**data)
        config.validate()
        return config

    def to_dict(self) -> dict:
        return asdict(self)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = _shortcut(cin, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x), inplace=True)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def _stem(kind: str, width: int) -> nn.Sequential:
    """The layers before the first stage, shrinking the input by STEM_STRIDES[kind]."""
    if kind == "small":
        return nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                             nn.ReLU(inplace=True))
    layers = [nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
              nn.ReLU(inplace=True)]
    if kind == "resnet":
        layers.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*layers)


class ResNetEncoder(nn.Module):
    """ResNet-18/34/50 trunk with global average pooling; `out_dim` features per image.

    The feature map is the input shrunk by STEM_STRIDES[stem] * 8 (the stages halve it three
    times), rounding up at each stride."""

    def __init__(self, arch: str = "resnet18", width: int = 64, stem: str = "resnet") -> None:
        super().__init__()
        kind, depths = ARCHITECTURES[arch]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.stem = _stem(stem, width)
        stages = []
        cin = width
        for i, depth in enumerate(depths):
            planes = width * 2**i
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # residual branches start near identity: stabler from scratch
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
            elif isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, out_dim, h, w) before global pooling."""
        return self.stages(self.stem(x))

    def feature_maps(self, x: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the output of stage `keep` (0-based), the final map)."""
        x = self.stem(x)
        kept = x
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == keep:
                kept = x
        return kept, x

    def stage_channels(self, stage: int) -> int:
        last = self.stages[stage][-1]
        return (last.bn3 if isinstance(last, Bottleneck) else last.bn2).num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))


def soft_argmax(heat: torch.Tensor) -> torch.Tensor:
    """Heat maps (N, J, h, w) -> (N, J, 2) expected (x, y) under each map's softmax, in crop
    coordinates (-0.5..0.5 of the side from the centre, y down; cell centres at (i + 0.5) / w -
    0.5): differentiable and finer than the grid (Sun et al. 2018, integral regression)."""
    n, j, h, w = heat.shape
    prob = heat.flatten(2).softmax(dim=2).view(n, j, h, w)
    xs = (torch.arange(w, device=heat.device, dtype=prob.dtype) + 0.5) / w - 0.5
    ys = (torch.arange(h, device=heat.device, dtype=prob.dtype) + 0.5) / h - 0.5
    return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], dim=-1)


def crop_keypoints(joints_world: np.ndarray, squares: np.ndarray, calibration) -> np.ndarray:
    """World joints (T, J, 3) mm seen in crop squares (T, 4) x0 y0 x1 y1 of a calibrated camera
    -> (T, J, 2) float32 positions in the crops as fractions of the side from the centre (x
    right, y down; the keypoint head's target). Lens distortion is applied as the pixels have
    it (calibration.project)."""
    uv = calibration.project(np.asarray(joints_world, dtype=np.float64))
    sq = np.asarray(squares, dtype=np.float64)
    side = (sq[:, 2] - sq[:, 0])[:, None, None]
    centre = np.stack([(sq[:, 0] + sq[:, 2]) / 2, (sq[:, 1] + sq[:, 3]) / 2], axis=1)[:, None]
    return ((uv - centre) / side).astype(np.float32)


def crop_rays(
    squares: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None
) -> np.ndarray:
    """Crop squares (..., 4) x0 y0 x1 y1 in pixels -> ray features (..., 3) float32.

    Why: a crop hides where the person stands in the image, yet the camera-frame orientation of
    the same-looking body depends on it (the viewing ray). Features: (x, y) of the undistorted
    normalised ray K^-1 [u, v, 1] through the square's centre, and the square's side / fx.
    """
    sq = np.asarray(squares, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    centre = np.stack([(sq[..., 0] + sq[..., 2]) / 2, (sq[..., 1] + sq[..., 3]) / 2], axis=-1)
    flat = centre.reshape(-1, 2)
    if dist is not None and np.any(np.asarray(dist) != 0):
        import cv2

        xy = cv2.undistortPoints(flat[:, None, :], K, np.asarray(dist, np.float64)).reshape(-1, 2)
    else:
        y = (flat[:, 1] - K[1, 2]) / K[1, 1]
        xy = np.stack([(flat[:, 0] - K[0, 2] - K[0, 1] * y) / K[0, 0], y], axis=1)
    side = (sq[..., 2] - sq[..., 0]).reshape(-1, 1) / K[0, 0]
    return np.concatenate([xy, side], axis=1).reshape(sq.shape[:-1] + (RAY_DIM,)).astype(
        np.float32)


def default_rays(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, 3) rays along the optical axis: what a caller that knows no geometry gets."""
    rays = torch.zeros(n, RAY_DIM, device=device)
    rays[:, 2] = DEFAULT_RAY_SIZE
    return rays


def ray_rotation(rays: torch.Tensor) -> torch.Tensor:
    """(N, 3) ray features -> (N, 3, 3) the smallest rotation taking the optical axis to the ray.

    Orientation relative to the viewing ray is what the crop shows; composing with this rotation
    gives the camera-frame orientation (a perspective correction).
    """
    d = F.normalize(torch.cat([rays[:, :2], torch.ones_like(rays[:, :1])], dim=1), dim=1)
    vx, vy, c = -d[:, 1], d[:, 0], d[:, 2]  # v = z x d, c = z . d (> 0: in front)
    zero = torch.zeros_like(c)
    skew = torch.stack([torch.stack([zero, zero, vy], 1), torch.stack([zero, zero, -vx], 1),
                        torch.stack([-vy, vx, zero], 1)], 1)
    eye = torch.eye(3, device=rays.device, dtype=rays.dtype).expand(len(rays), 3, 3)
    return eye + skew + skew @ skew / (1 + c)[:, None, None]


def rotation_from_6d(x: torch.Tensor) -> torch.Tensor:
    """(N, 6) -> (N, 3, 3) rotation by Gram-Schmidt (Zhou et al. 2019); columns are the axes."""
    a, b = x[:, :3], x[:, 3:]
    c0 = F.normalize(a, dim=1)
    c1 = F.normalize(b - (c0 * b).sum(1, keepdim=True) * c0, dim=1)
    c2 = torch.cross(c0, c1, dim=1)
    return torch.stack([c0, c1, c2], dim=2)


class MCSSModel(nn.Module):
    """Crop (N, 3, S, S) float in [0, 1] -> embedding, canonical pose, rotation, camera pose."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.config.validate()
        c = self.config
        self.encoder = ResNetEncoder(c.arch, c.width, c.stem)
        feat = self.encoder.out_dim
        grid = ORIENTATION_GRID**2
        self.embedding_head = nn.Linear(feat * (grid if c.embedding_spatial else 1),
                                        c.embedding_dim)
        view_in = feat * (grid if c.orientation_spatial else 1) + (RAY_DIM if c.ray_input else 0)
        self.pose_head = nn.Sequential(
            nn.Linear(c.embedding_dim + (c.orientation_hidden if c.pose_direct else 0),
                      c.pose_hidden), nn.ReLU(inplace=True),
            nn.Linear(c.pose_hidden, c.pose_hidden), nn.ReLU(inplace=True),
            nn.Linear(c.pose_hidden, c.num_joints * 3),
        )
        if c.pose_direct:  # the free view dimensions beside the embedding
            self.view_head = nn.Sequential(nn.Linear(view_in, c.orientation_hidden),
                                           nn.ReLU(inplace=True))
        else:
            self.orientation_head = nn.Sequential(
                nn.Linear(view_in, c.orientation_hidden), nn.ReLU(inplace=True),
                nn.Linear(c.orientation_hidden, 6),
            )
            with torch.no_grad():  # start at the identity rotation, not a random one
                self.orientation_head[-1].weight.mul_(0.01)
                self.orientation_head[-1].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))
        if c.keypoint_head and c.keypoint_spatial:
            self.keypoint_head = nn.Conv2d(self.encoder.stage_channels(KEYPOINT_STAGE),
                                           c.num_joints, 1)
        elif c.keypoint_head:
            self.keypoint_head = nn.Linear(feat, c.num_joints * 2)

    def forward(
        self, images: torch.Tensor, heads: bool = True, rays: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Outputs: embedding (N, D); with heads also pose_canonical and pose_cam (N, J, 3) in mm
        (root-relative), rotation (N, 3, 3) canonical -> camera and, with a keypoint head,
        keypoints2d (N, J, 2) in the crop. `rays` (N, 3) (crop_rays)
        are read only by ray_input models; None means the optical axis."""
        x = (images - IMAGE_MEAN) / IMAGE_STD
        heat_in = None
        if self.config.keypoint_head and self.config.keypoint_spatial and heads:
            heat_in, fmap = self.encoder.feature_maps(x, KEYPOINT_STAGE)
        else:
            fmap = self.encoder.feature_map(x)
        features = fmap.mean(dim=(2, 3))
        pooled_grid = (F.adaptive_avg_pool2d(fmap, ORIENTATION_GRID).flatten(1)
                       if self.config.orientation_spatial or self.config.embedding_spatial
                       else None)
        raw = self.embedding_head(pooled_grid if self.config.embedding_spatial else features)
        embedding = F.normalize(raw.float(), dim=1)
        out = {"embedding": embedding}
        if heads:
            pose_in = embedding.to(features.dtype) if self.config.pose_on_unit_embedding else raw
            head_in = pooled_grid if self.config.orientation_spatial else features
            view_rays = None  # rays reach only ray_input models
            if self.config.ray_input:
                view_rays = (default_rays(len(images), images.device) if rays is None
                             else rays.to(images.device).float())
                head_in = torch.cat(
                    [head_in, (view_rays * RAY_FEATURE_SCALE).to(features.dtype)], 1)
            if self.config.pose_direct:
                out.update(self._direct_pose(pose_in, head_in, view_rays))
            else:
                out.update(self._factorised_pose(pose_in, head_in, view_rays))
            if heat_in is not None:
                out["keypoints2d"] = soft_argmax(self.keypoint_head(heat_in).float())
            elif self.config.keypoint_head:  # crop coordinates, -0.5..0.5 of the side, y down
                out["keypoints2d"] = self.keypoint_head(features).float().view(
                    -1, self.config.num_joints, 2)
        return out

    def _joints(self, pose_in: torch.Tensor) -> torch.Tensor:
        """The pose head's output as (N, J, 3) millimetres."""
        return self.pose_head(pose_in).float().view(-1, self.config.num_joints, 3) * POSE_SCALE_MM

    def _factorised_pose(self, pose_in: torch.Tensor, head_in: torch.Tensor,
                         rays: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Canonical pose from the embedding, rotated by the orientation head's rotation."""
        canonical = self._joints(pose_in)
        rotation = rotation_from_6d(self.orientation_head(head_in).float())
        if rays is not None:  # ray_input: the head's rotation is relative to the viewing ray
            rotation = ray_rotation(rays) @ rotation
        return {"pose_canonical": canonical, "rotation": rotation,
                "pose_cam": torch.einsum("nij,nkj->nki", rotation, canonical)}

    def _direct_pose(self, pose_in: torch.Tensor, head_in: torch.Tensor,
                     rays: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Camera-frame pose from the embedding plus the view dimensions (relative to the
        viewing ray with ray_input); rotation and canonical pose read off its joints."""
        pose = self._joints(torch.cat([pose_in, self.view_head(head_in)], 1))
        # in float32 under AMP too: the frame is built from differences of joints ~1000 mm
        # apart, which bf16 would round to several millimetres
        with torch.autocast(pose.device.type, enabled=False):
            if rays is not None:
                pose = torch.einsum("nij,nkj->nki", ray_rotation(rays), pose)
            rotation, canonical = body_frame(pose)
        return {"pose_canonical": canonical, "rotation": rotation, "pose_cam": pose}


def body_frame(pose_cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """canonical_frame for tensors, differentiable: (N, J, 3) -> rotation (N, 3, 3) canonical
    -> camera and the canonical pose (N, J, 3)."""
    x = F.normalize(pose_cam[:, 1] - pose_cam[:, 4], dim=1, eps=1e-9)
    up = pose_cam[:, 8] - pose_cam[:, 0]
    y = F.normalize(up - (up * x).sum(1, keepdim=True) * x, dim=1, eps=1e-9)
    rotation = torch.stack([x, y, torch.cross(x, y, dim=1)], dim=2)
    return rotation, torch.einsum("nkj,nji->nki", pose_cam, rotation)


def canonical_frame(pose_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Root-relative poses (N, 17, 3) -> (rotation (N, 3, 3) canonical->camera, canonical poses).

    Axes: x from the left hip to the right hip, y the spine direction (hip -> thorax) made
    orthogonal to x, z = x cross y. pose_cam = canonical @ R^T.
    """
    p = np.asarray(pose_cam, dtype=np.float64)
    x = p[:, 1] - p[:, 4]
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    up = p[:, 8] - p[:, 0]
    y = up - (up * x).sum(1, keepdims=True) * x
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-9)
    z = np.cross(x, y)
    rot = np.stack([x, y, z], axis=2)
    canonical = np.einsum("nkj,nji->nki", p, rot)  # R^T p per joint
    return rot, canonical
