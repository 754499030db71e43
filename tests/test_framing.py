"""core.framing: the sphere to keep in view and the distance that keeps it there, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcss_studio.core.framing import (
    PERSON_HEIGHT_MM,
    Framing,
    bounding_sphere,
    rig_and_person,
    standing_person,
)


def test_bounding_sphere_is_centred_on_the_box_with_the_farthest_point_as_radius():
    # box x in [-1, 1], y in [0, 2], z = 0: centre (0, 1, 0); (1, 0, 0) is sqrt(2) away
    f = bounding_sphere(np.array([[-1.0, 0, 0], [1, 0, 0], [0, 2, 0]]))
    assert np.allclose(f.centre, [0, 1, 0])
    assert f.radius == pytest.approx(math.sqrt(2))


def test_bounding_sphere_skips_non_finite_points_and_refuses_none():
    f = bounding_sphere(np.array([[0.0, 0, 0], [np.nan, 5, 5], [2, 0, 0]]))
    assert np.allclose(f.centre, [1, 0, 0]) and f.radius == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bounding_sphere(np.full((3, 3), np.nan))


def test_distance_fits_the_sphere_in_the_narrower_half_angle():
    unit = Framing(np.zeros(3), 1.0)
    # 90 deg vertical, square view: the sphere is seen under 45 deg at d = 1 / sin(45) = sqrt(2)
    assert unit.distance(90, 1.0, margin=1.0) == pytest.approx(math.sqrt(2))
    # wider than tall: the vertical angle still limits
    assert unit.distance(90, 2.0, margin=1.0) == pytest.approx(math.sqrt(2))
    # half as wide as tall: horizontal half angle atan(0.5), d = 1 / sin(atan(0.5)) = sqrt(5)
    assert unit.distance(90, 0.5, margin=1.0) == pytest.approx(math.sqrt(5))
    # 60 deg: d = r / sin(30) = 2 r; the margin scales it
    assert Framing(np.zeros(3), 3000.0).distance(60, 1.0, margin=1.1) == pytest.approx(6600)
    with pytest.raises(ValueError):
        unit.distance(0, 1.0)


def test_standing_person_is_a_box_on_the_floor_at_the_point():
    box = standing_person(np.array([100.0, -200.0, 700.0]))
    assert box.shape == (8, 3)
    assert box[:, 2].min() == 0 and box[:, 2].max() == PERSON_HEIGHT_MM
    assert np.allclose(box[:, :2].mean(axis=0), [100, -200])


def test_rig_framing_holds_the_cameras_and_the_person_framing_only_the_person():
    cameras = np.array([[4000.0, 0, 1500], [-4000, 0, 1500]])
    person = np.array([[0.0, 0, 0], [0, 0, 1800]])
    rig, alone = rig_and_person(cameras, person)
    # rig box x [-4000, 4000], y 0, z [0, 1800]: centre (0, 0, 900), radius to a camera
    assert np.allclose(rig.centre, [0, 0, 900])
    assert rig.radius == pytest.approx(math.hypot(4000, 600))
    assert np.allclose(alone.centre, [0, 0, 900]) and alone.radius == pytest.approx(900)
    for f in rig_and_person(None, person):  # no cameras: both frame the person
        assert np.allclose(f.centre, alone.centre) and f.radius == alone.radius
