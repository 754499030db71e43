"""core.label_layout: joint names placed clear of each other and of the joints, by hand."""

from __future__ import annotations

import itertools

from mcss_studio.core.joints import JOINT_NAMES
from mcss_studio.core.label_layout import GAP, MARKER_HALF, place_joint_labels, place_labels

OFF = GAP + MARKER_HALF  # 6 px from a joint to its label


def overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_a_lone_label_goes_right_of_its_joint_centred_on_it():
    assert place_labels([(50, 50)], [(20, 10)], (200, 200)) == [(50 + OFF, 45, 20, 10)]


def test_a_label_that_would_cover_another_moves_to_the_next_free_spot():
    # joints 20 px apart at one height, the right one placed first (x 76..96); the left one's
    # right spot (x 56..76) would cover the right joint's marker (x 67..73), so it goes left
    rects = place_labels([(50, 50), (70, 50)], [(20, 10), (20, 10)], (200, 200), order=[1, 0])
    assert rects[1] == (70 + OFF, 45, 20, 10)
    assert rects[0] == (50 - OFF - 20, 45, 20, 10)


def test_labels_stay_inside_the_view():
    rects = place_labels([(195, 5)], [(20, 10)], (200, 200))
    x, y, w, h = rects[0]
    assert x >= 0 and y >= 0 and x + w <= 200 and y + h <= 200
    assert x < 195  # no room on the right: placed to the left


def test_a_crowd_shows_the_priority_names_that_fit_and_none_overlap():
    anchors = [(100.0, 100.0)] * len(JOINT_NAMES)  # a skeleton seen from far away: one point
    rects = place_joint_labels(anchors, [(40, 12)] * len(JOINT_NAMES), (400, 400))
    placed = [r for r in rects if r is not None]
    assert 0 < len(placed) <= 8  # eight spots around one joint at most
    assert rects[JOINT_NAMES.index("head")] is not None  # the first name a user looks for
    assert rects[JOINT_NAMES.index("hip")] is None  # the crowded trunk gives way
    for a, b in itertools.combinations(placed, 2):
        assert not overlap(a, b)


def test_labels_never_cover_a_joint_and_non_finite_joints_get_none():
    anchors = [(float(20 * i), 100.0) for i in range(10)] + [(float("nan"), 0.0)]
    rects = place_labels(anchors, [(15, 10)] * len(anchors), (400, 400))
    assert rects[-1] is None
    for r in rects:
        for x, y in anchors[:-1]:
            if r is not None:
                marker = (x - MARKER_HALF, y - MARKER_HALF, 2 * MARKER_HALF, 2 * MARKER_HALF)
                assert not overlap(r, marker)
