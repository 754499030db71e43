"""Human3.6M 17-joint skeleton in VideoPose3D order; the one definition every layer uses."""

from __future__ import annotations

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "hip", "r_hip", "r_knee", "r_foot", "l_hip", "l_knee", "l_foot", "spine", "thorax",
    "neck", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
ROOT = 0

# parent of each joint (-1 for the root)
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
BONES: tuple[tuple[int, int], ...] = tuple((p, j) for j, p in enumerate(PARENTS) if p >= 0)

LEFT_JOINTS: tuple[int, ...] = (4, 5, 6, 11, 12, 13)
RIGHT_JOINTS: tuple[int, ...] = (1, 2, 3, 14, 15, 16)

# index map that swaps left and right joints (for horizontal-flip augmentation)
FLIP_PERMUTATION: np.ndarray = np.arange(NUM_JOINTS)
for _l, _r in zip(LEFT_JOINTS, RIGHT_JOINTS):
    FLIP_PERMUTATION[_l], FLIP_PERMUTATION[_r] = _r, _l

# bone colours (RGB 0..255): left blue, right red, centre grey
LEFT_COLOR = (40, 110, 255)
RIGHT_COLOR = (235, 50, 50)
CENTER_COLOR = (200, 200, 200)


def bone_side(bone: tuple[int, int]) -> str:
    """'left', 'right' or 'center' for a (parent, child) bone, by its child joint."""
    child = bone[1]
    if child in LEFT_JOINTS:
        return "left"
    if child in RIGHT_JOINTS:
        return "right"
    return "center"


def bone_colors() -> list[tuple[int, int, int]]:
    """One RGB colour per entry of BONES."""
    table = {"left": LEFT_COLOR, "right": RIGHT_COLOR, "center": CENTER_COLOR}
    return [table[bone_side(b)] for b in BONES]
