"""Placing joint-name labels on screen so that none overlaps another label or a joint.

Plain Python (no Qt), shared by the camera views and the 3D view. Labels are placed greedily in
priority order (the extremities a user looks for first: head, wrists, feet, ...), each at the
first of several spots around its joint that stays inside the view and clear of every joint
marker and every label already placed; a label with no free spot is left out rather than drawn
over another. So a small, far-away skeleton shows a few names and a zoomed-in one shows all.
"""

from __future__ import annotations

from collections.abc import Sequence

from .joints import JOINT_NAMES

# extremities first, then the joints between them, the crowded trunk last
PRIORITY: tuple[str, ...] = (
    "head", "l_wrist", "r_wrist", "l_foot", "r_foot", "l_elbow", "r_elbow", "l_knee", "r_knee",
    "l_shoulder", "r_shoulder", "l_hip", "r_hip", "neck", "thorax", "spine", "hip",
)
PRIORITY_ORDER: tuple[int, ...] = tuple(JOINT_NAMES.index(n) for n in PRIORITY)
MARKER_HALF = 3.0  # px kept clear around every joint
GAP = 3.0  # px between a joint and its label

Rect = tuple[float, float, float, float]  # left, top, width, height


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _candidates(x: float, y: float, w: float, h: float) -> list[Rect]:
    """Spots around a joint at (x, y): right, left, then the four diagonals, above, below."""
    g = GAP + MARKER_HALF
    return [
        (x + g, y - h / 2, w, h), (x - g - w, y - h / 2, w, h),
        (x + g, y - g - h, w, h), (x + g, y + g, w, h),
        (x - g - w, y - g - h, w, h), (x - g - w, y + g, w, h),
        (x - w / 2, y - g - h, w, h), (x - w / 2, y + g, w, h),
    ]


def place_labels(
    anchors: Sequence[tuple[float, float]],
    sizes: Sequence[tuple[float, float]],
    bounds: tuple[float, float],
    order: Sequence[int] | None = None,
) -> list[Rect | None]:
    """A rectangle for each label (or None where none fits), in view pixels.

    anchors: joint positions (x, y); sizes: (width, height) of each label's text box; bounds:
    (width, height) of the view. Non-finite anchors get no label and block nothing.
    """
    n = len(anchors)
    finite = [all(v == v and abs(v) != float("inf") for v in a) for a in anchors]
    taken: list[Rect] = [
        (x - MARKER_HALF, y - MARKER_HALF, 2 * MARKER_HALF, 2 * MARKER_HALF)
        for (x, y), ok in zip(anchors, finite) if ok
    ]
    placed: list[Rect | None] = [None] * n
    for i in order if order is not None else range(n):
        if not finite[i]:
            continue
        (x, y), (w, h) = anchors[i], sizes[i]
        for rect in _candidates(x, y, w, h):
            inside = rect[0] >= 0 and rect[1] >= 0 and rect[0] + w <= bounds[0] \
                and rect[1] + h <= bounds[1]
            if inside and not any(_overlaps(rect, t) for t in taken):
                placed[i] = rect
                taken.append(rect)
                break
    return placed


def place_joint_labels(
    anchors: Sequence[tuple[float, float]],
    sizes: Sequence[tuple[float, float]],
    bounds: tuple[float, float],
) -> list[Rect | None]:
    """place_labels for the 17 joints of the skeleton, in PRIORITY order."""
    return place_labels(anchors, sizes, bounds, PRIORITY_ORDER)
