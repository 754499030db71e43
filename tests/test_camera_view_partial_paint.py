"""A camera view repainting a small area (a labelling drag step) draws there exactly what a
whole repaint draws: the person box is drawn as its edges that reach into the area."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QRect, QRectF
from PySide6.QtGui import QImage, QPixmap, QRegion

from mcss_studio.gui.player.camera_view import CameraView, _box_edges

pytestmark = [pytest.mark.gui]


def test_box_edges_are_the_ones_reaching_into_the_area():
    rect = QRectF(10.0, 20.0, 100.0, 50.0)  # left 10, top 20, right 110, bottom 70

    def edges(x, y, w, h):
        return sorted((e.x1(), e.y1(), e.x2(), e.y2()) for e in _box_edges(rect, QRect(x, y, w, h)))

    assert edges(40, 35, 20, 10) == []  # inside, 15 px clear of every edge
    assert edges(200, 200, 10, 10) == []  # outside
    assert edges(0, 40, 8, 5) == [(10.0, 20.75, 10.0, 69.25)]  # 2 px left of the left edge
    # a corner: the top edge (flat caps reaching half the pen past the corner) and the left one
    assert edges(5, 15, 4, 4) == [(9.25, 20.0, 110.75, 20.0), (10.0, 20.75, 10.0, 69.25)]


def pixels(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    raw = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    rows = raw.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 4]
    return rows.reshape(image.height(), image.width(), 4).copy()


@pytest.mark.parametrize("area", [QRect(60, 60, 40, 30), QRect(30, 40, 60, 30),
                                  QRect(150, 120, 50, 60), QRect(41, 100, 20, 20),
                                  QRect(260, 200, 30, 30)],
                         ids=["inside", "top-left corner", "right edge",
                              "beside the left edge, touched by its antialiasing", "outside"])
def test_an_area_repaint_over_the_box_matches_a_whole_repaint(qtbot, area):
    view = CameraView(0, "cam", (320, 240))
    qtbot.addWidget(view)
    view.resize(320, 240)
    rgb = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    view.set_frame(rgb, 1.0, 0, True)
    view.set_overlays(np.array([40.5, 50.25, 180.5, 200.75]), None, None, False)
    whole = pixels(view.grab().toImage())
    partial = QPixmap(view.size())
    partial.fill()
    view.render(partial, area.topLeft(), QRegion(area))  # the area lands where it is
    got = pixels(partial.toImage())[area.top():area.bottom() + 1, area.left():area.right() + 1]
    want = whole[area.top():area.bottom() + 1, area.left():area.right() + 1]
    assert np.array_equal(got, want)
