"""The neighbour gallery, the embedding map and the inspector's "Mine now" driven through a
real Session on the tiny synthetic dataset with a checkpoint trained on it in the test setup
(conftest.py trained_project: the same instant in another camera is its nearest neighbour for
most crops): queries, filters, stale answers, jumps, the two-way selection between map and
gallery, and mining with the trainer's own function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF, Qt

from mcss_studio.core.checkpoint import checkpoint_digest
from mcss_studio.core.embeddings import NeighbourFilter
from mcss_studio.gui.embedding_jobs import GalleryAnswer
from mcss_studio.gui.embedding_map import EmbeddingMapPanel
from mcss_studio.gui.gallery import GalleryPanel
from mcss_studio.gui.session import Session
from tests.gui_fixtures import make_checkpoint

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("private_studio_dirs")]
WAIT_MS = 120000  # generous: the machine is shared; nothing here measures time
DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo_model.safetensors"


@pytest.fixture
def tiny_data(trained_project):
    return trained_project.data


@pytest.fixture
def session(qtbot, trained_project):
    s = Session(device="cpu")
    assert s.open_path(trained_project.data), s.state.last_error
    s.open_checkpoint(trained_project.checkpoint)
    qtbot.waitUntil(lambda: s.state.embedding_index is not None and s.state.retrieval is not None,
                    timeout=WAIT_MS)
    yield s
    s.close()


def tile_keys(panel: GalleryPanel) -> list[tuple[str, int, int]]:
    return [t.item.key for t in panel.tiles]


def wait_answer(qtbot, panel: GalleryPanel) -> None:
    qtbot.waitUntil(panel.ready, timeout=WAIT_MS)


def test_gallery_shows_the_index_answer_and_a_click_jumps_there(qtbot, session):
    state, index = session.state, session.state.embedding_index
    panel = GalleryPanel(state, session.embeddings.neighbours)
    qtbot.addWidget(panel)
    state.set_frame(5)
    wait_answer(qtbot, panel)
    query = index.row(state.sequence.name, 0, 5)
    expected = index.query(query, 10, NeighbourFilter())
    assert tile_keys(panel) == [index.key(r) for r in expected.rows]
    assert all(cam != 0 for _s, cam, _f in tile_keys(panel))  # other cameras by default
    assert state.frame_set == tuple(tile_keys(panel)) and state.frame_set_source == "gallery"
    figures = state.retrieval["figures"]
    assert {"hit@1", "chance_hit@1", "map@10", "chance_map@10", "strict_hit@1",
            "chance_strict_hit@1", "hit@1_kappa0.05"} <= set(figures)

    panel.sequence_scope.setCurrentIndex(2)  # other sequences: the click opens another one
    wait_answer(qtbot, panel)
    target = panel.tiles[0]
    seq, cam, frame = target.item.key
    assert seq != state.sequence.name
    qtbot.mouseClick(target, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: state.sequence.name == seq, timeout=WAIT_MS)
    assert (state.selected_camera, state.frame) == (cam, frame)
    wait_answer(qtbot, panel)  # and the gallery follows to the frame shown now
    assert panel.answer.query == index.row(seq, cam, frame)


def test_the_top_neighbour_is_the_same_instant_in_another_camera_for_most_crops(
        qtbot, session, trained_project):
    state = session.state
    panel = GalleryPanel(state, session.embeddings.neighbours)
    qtbot.addWidget(panel)
    name = state.sequence.name
    same_instant = []
    for camera in range(state.num_cameras):
        state.select_camera(camera)
        for frame in range(state.num_frames):
            state.set_frame(frame)
            wait_answer(qtbot, panel)
            seq, cam, f = panel.tiles[0].item.key
            assert cam != camera
            same_instant.append((seq, f) == (name, frame))
    # the checkpoint's measured strict Hit@1 over every crop is >= 0.6 (trained_fixtures.py)
    assert np.mean(same_instant) >= 0.6, np.mean(same_instant)
    assert trained_project.strict_hit1 >= 0.6


def test_each_filter_changes_the_gallery_as_specified(qtbot, session):
    state, index = session.state, session.state.embedding_index
    panel = GalleryPanel(state, session.embeddings.neighbours)
    qtbot.addWidget(panel)
    name = state.sequence.name
    query = next(index.row(name, 1, f) for f in range(3, 9)  # one the model gets right
                 if index.key(int(index.query(index.row(name, 1, f), 1).rows[0]))[0::2]
                 == (name, f))
    frame = index.key(query)[2]
    state.select_camera(1)
    state.set_frame(frame)
    wait_answer(qtbot, panel)

    def shown(**change) -> list[tuple[str, int, int]]:
        wait_answer(qtbot, panel)
        keys = tile_keys(panel)
        assert keys == [index.key(r) for r in index.query(query, panel.k_box.value(),
                                                          panel.neighbour_filter()).rows]
        return keys

    nearest = shown()
    assert nearest[0] == (name, nearest[0][1], frame)  # the same instant, another camera
    assert all(c != 1 for _s, c, _f in nearest)  # other cameras only (the default)
    near_distances = [t.item.distance for t in panel.tiles]

    panel.other_cameras.setChecked(False)  # its own camera's neighbouring frames come in
    own = shown()
    assert any(c == 1 for _s, c, _f in own) and own != nearest
    assert (name, 1, frame) not in own  # never the query itself
    panel.other_cameras.setChecked(True)

    panel.min_dt.setValue(2)  # |dt| < 2 of its own sequence excluded: the same instant goes
    far_in_time = shown()
    assert all(abs(f - frame) >= 2 for s, _c, f in far_in_time if s == name)
    assert nearest[0] not in far_in_time
    panel.min_dt.setValue(0)

    panel.k_box.setValue(30)
    panel.sequence_scope.setCurrentIndex(1)  # same sequence
    assert {s for s, _c, _f in shown()} == {name}
    panel.sequence_scope.setCurrentIndex(2)  # other sequences
    assert name not in {s for s, _c, _f in shown()}
    panel.sequence_scope.setCurrentIndex(0)

    subject = index.info(query).subject
    panel.subject_scope.setCurrentIndex(1)  # same subject: its two sequences
    same = shown()
    assert {index.info(index.row(*k)).subject for k in same} == {subject}
    assert len({s for s, _c, _f in same}) == 2
    panel.subject_scope.setCurrentIndex(2)  # other subjects
    assert subject not in {index.info(index.row(*k)).subject for k in shown()}
    panel.subject_scope.setCurrentIndex(0)

    panel.k_box.setValue(10)
    panel.least.setChecked(True)
    shown()
    farthest = [t.item.distance for t in panel.tiles]
    assert farthest == sorted(farthest, reverse=True) and min(farthest) > max(near_distances)


def test_answers_to_older_requests_are_dropped(qtbot, session):
    state = session.state
    panel = GalleryPanel(state, session.embeddings.neighbours)
    qtbot.addWidget(panel)
    wait_answer(qtbot, panel)
    shown = tile_keys(panel)
    old = GalleryAnswer(panel.serial - 1, state.embedding_index, 0, [])
    panel._answered(old)
    assert panel.dropped == 1 and tile_keys(panel) == shown


def test_gallery_follows_playback_to_the_newest_frame(qtbot, session):
    state, index = session.state, session.state.embedding_index
    panel = GalleryPanel(state, session.embeddings.neighbours)
    qtbot.addWidget(panel)
    wait_answer(qtbot, panel)
    for t in range(state.num_frames):  # faster than any answer: requests pile up, then drop
        state.set_frame(t)
    wait_answer(qtbot, panel)
    assert panel.answer.query == index.row(state.sequence.name, 0, state.num_frames - 1)
    assert panel.serial >= state.num_frames


def test_map_hover_shows_the_crop_under_the_pointer(qtbot, session):
    state, index = session.state, session.state.embedding_index
    panel = EmbeddingMapPanel(state)
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    qtbot.waitUntil(panel.ready, timeout=WAIT_MS)
    row = index.row(index.sequences[1].name, 2, 4)
    point = QPointF(*map(float, index.projection()[row]))
    panel._hover(panel.view.mapViewToScene(point))
    seq, cam, frame = index.key(panel.hovered)
    assert np.allclose(index.projection()[panel.hovered], index.projection()[row], atol=1e-3)
    assert seq in panel.hover_text.text() and f"frame {frame}" in panel.hover_text.text()
    assert not panel.hover_image.pixmap().isNull()


def test_map_box_selection_fills_the_gallery_and_back(qtbot, session):
    state, index = session.state, session.state.embedding_index
    gallery = GalleryPanel(state, session.embeddings.neighbours)
    panel = EmbeddingMapPanel(state)
    qtbot.addWidget(gallery)
    qtbot.addWidget(panel)
    qtbot.waitUntil(panel.ready, timeout=WAIT_MS)
    wait_answer(qtbot, gallery)
    xy = index.projection()
    # the gallery's neighbours are outlined on the map
    px, py = panel.picked.getData()
    rows = index.rows_of(state.frame_set)
    np.testing.assert_allclose(np.c_[px, py], xy[rows])
    # the current crop is marked and follows the frame
    state.set_frame(9)
    cx, cy = panel.current.getData()
    np.testing.assert_allclose([cx[0], cy[0]], xy[index.row(state.sequence.name, 0, 9)])

    centre = xy[index.row(state.sequence.name, 0, 3)]
    rect = QRectF(float(centre[0]) - 0.02, float(centre[1]) - 0.02, 0.04, 0.04)
    panel.view.boxSelected.emit(rect)
    inside = panel.rows_in(rect)
    assert len(inside) >= 1
    assert state.frame_set_source == "map"
    assert state.frame_set == tuple(index.key(r) for r in inside)
    wait_answer(qtbot, gallery)
    assert tile_keys(gallery) == list(state.frame_set[:60])

    panel.view.clickedAt.emit(QPointF(float(xy[inside[0], 0]), float(xy[inside[0], 1])))
    seq, cam, frame = index.key(int(panel.nearest(QPointF(*map(float, xy[inside[0]])))))
    qtbot.waitUntil(lambda: state.frame == frame and state.sequence.name == seq,
                    timeout=WAIT_MS)
    assert state.selected_camera == cam


def test_another_checkpoint_replaces_the_index(qtbot, session, tmp_path, trained_project):
    state = session.state
    first = state.embedding_index
    other = make_checkpoint(tmp_path / "other.safetensors", crop_size=64)
    session.open_checkpoint(other)
    qtbot.waitUntil(lambda: state.embedding_index is not None
                    and state.embedding_index is not first, timeout=WAIT_MS)
    assert state.embedding_index.checkpoint == checkpoint_digest(other)
    assert first.checkpoint == checkpoint_digest(trained_project.checkpoint)
    assert state.embedding_index.dim == 16 != first.dim


def test_window_embeds_only_while_an_embedding_panel_is_open(qtbot, tiny_data):
    from mcss_studio.gui.main_window import MainWindow

    window = MainWindow(interactive=False, with_3d=False, remember_recent=False)
    qtbot.addWidget(window)
    state, session = window.state, window.session
    try:
        assert not any(d.isVisible() for d in window.docks.values())
        assert window.open_path(tiny_data)
        window.open_checkpoint(DEMO)
        qtbot.waitUntil(lambda: state.checkpoint is not None and not session.cache_busy,
                        timeout=WAIT_MS)
        assert state.embedding_index is None and not session.embeddings.busy
        window.docks["map"].toggleViewAction().trigger()  # View > Embedding map
        qtbot.waitUntil(lambda: state.embedding_index is not None, timeout=WAIT_MS)
        qtbot.waitUntil(window.embedding_map.ready, timeout=WAIT_MS)
    finally:
        window.close()


def test_mine_now_shows_what_the_trainers_mining_function_returns(qtbot, session,
                                                                   trained_project):
    import torch

    from mcss_studio.core.mine_now import MiningRules, mining_batch
    from mcss_studio.gui.inspector import InspectorPanel
    from trainer.mining import mine_triplets  # what trainer/train.py calls

    state, index = session.state, session.state.embedding_index
    panel = InspectorPanel(state)
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.show()
    try:
        state.set_run(trained_project.run)  # the run's rules: tau 1, hardest, margin 0.2
        qtbot.waitUntil(lambda: panel.run.start is not None, timeout=WAIT_MS)
        rules = panel.mining_rules()
        assert rules == MiningRules(tau=1, mining="hardest", margin=0.2)
        state.select_camera(2)
        state.set_frame(7)
        assert panel.mine_button.isEnabled() and panel.mine_now()
        qtbot.waitUntil(lambda: panel.mined is not None and panel.ready(), timeout=WAIT_MS)

        query = index.row(state.sequence.name, 2, 7)
        rows = mining_batch(index, query, rules)
        key = [torch.from_numpy(a[rows].astype(np.int64))
               for a in (index.seq_id, index.frame, index.camera)]
        t = mine_triplets(torch.from_numpy(np.asarray(index.embeddings[rows])), *key,
                          rules.tau, rules.mining, None, rules.tau_max,
                          rules.cross_sequence_negatives)
        expected = {}
        for k in range(len(t)):
            a, p, n = (index.key(int(rows[int(x[k])])) for x in (t.anchor, t.positive,
                                                                   t.negative))
            if (a[0], a[2]) == (state.sequence.name, 7):
                expected[(a, p, n)] = (float(t.d_ap[k]), float(t.d_an[k]))
        m = panel.model
        shown = {}
        for r in range(m.rowCount()):
            refs = [m.ref(r, role) for role in ("anchor", "positive", "negative")]
            i = m.triplet(r)
            shown[tuple((f.sequence, f.camera_index, f.frame) for f in refs)] = (
                float(m.data_.triplets.col("d_ap")[i]), float(m.data_.triplets.col("d_an")[i]))
        assert len(expected) == 12 == len(shown)  # 4 cameras: every ordered pair
        assert shown.keys() == expected.keys()
        for k, v in expected.items():
            assert np.allclose(shown[k], v, atol=1e-6)
        violation = [float(m.data(m.index(r, 6))) for r in range(m.rowCount())]
        assert violation == sorted(violation, reverse=True)  # worst first
        assert "Mine now" in panel.status.text() and panel.show_run_button.isVisible()
        # the step column says when: now, with the step the checkpoint was saved at
        from mcss_studio.core.checkpoint import load_training_state

        saved_at = load_training_state(state.checkpoint)["step"]
        assert saved_at > 0
        assert {m.data(m.index(r, 0)) for r in range(m.rowCount())} == {
            f"now\nckpt {saved_at}"}
        assert str(saved_at) in m.data(m.index(0, 0), Qt.ItemDataRole.ToolTipRole)
        image = m.data(m.index(0, 3), Qt.ItemDataRole.DecorationRole)
        assert image is not None and not image.isNull()  # crops come from the index

        panel.show_run()  # back to the run's logged triplets
        assert panel.mined is None and m.rowCount() == len(panel.run.triplets) > 0
        assert m.data(m.index(0, 0)) == str(int(m.data_.triplets.col("step")[m.triplet(0)]))
    finally:
        panel.close_workers()


def drag_with_shift(qtbot, widget, points) -> None:
    """Shift + left-button drag through `points` (widget coordinates), as a user draws."""
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    shift, left, none = (Qt.KeyboardModifier.ShiftModifier, Qt.MouseButton.LeftButton,
                         Qt.MouseButton.NoButton)

    def send(kind, pos, button, buttons) -> None:
        event = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button,
                            buttons, shift)
        QApplication.sendEvent(widget, event)

    send(QEvent.Type.MouseButtonPress, points[0], left, left)
    for point in points[1:]:
        qtbot.wait(25)  # pyqtgraph drops moves closer together than its rate limit
        send(QEvent.Type.MouseMove, point, none, left)
    send(QEvent.Type.MouseButtonRelease, points[-1], left, none)


def test_map_lasso_fills_the_gallery_and_back(qtbot, session):
    from PySide6.QtCore import QPoint

    state, index = session.state, session.state.embedding_index
    gallery = GalleryPanel(state, session.embeddings.neighbours)
    panel = EmbeddingMapPanel(state)
    for w in (gallery, panel):
        qtbot.addWidget(w)
    panel.resize(900, 700)
    panel.show()
    qtbot.waitUntil(panel.ready, timeout=WAIT_MS)
    wait_answer(qtbot, gallery)
    panel.select_mode.setCurrentText("lasso")
    drawn = []
    panel.view.lassoSelected.connect(drawn.append)

    xy = index.projection()
    viewport = panel.plot.viewport()

    def on_screen(x: float, y: float) -> QPoint:
        return panel.plot.mapFromScene(panel.view.mapViewToScene(QPointF(x, y)))

    screen = np.array([[on_screen(*map(float, p)).x(), on_screen(*map(float, p)).y()]
                       for p in xy], np.float64)
    centre = screen[index.row(state.sequence.name, 1, 4)]
    radius = 40.0
    # a star-shaped lasso (concave): 5 tips at the radius, 5 notches at half of it
    angles = np.linspace(0, 2 * np.pi, 11)[:-1]
    r = np.where(np.arange(10) % 2 == 0, radius, radius / 2)
    path = [QPoint(int(round(centre[0] + rr * np.cos(a))), int(round(centre[1] + rr * np.sin(a))))
            for rr, a in zip(r, angles)]
    drag_with_shift(qtbot, viewport, [*path, path[0]])
    qtbot.waitUntil(lambda: bool(drawn), timeout=WAIT_MS)

    distance = np.linalg.norm(screen - centre, axis=1)
    chosen = set(index.rows_of(state.frame_set))
    assert state.frame_set_source == "map" and chosen
    near, far = set(np.flatnonzero(distance < radius / 2 * np.cos(np.pi / 5) - 2)), \
        set(np.flatnonzero(distance > radius + 2))
    assert near and near <= chosen and not (far & chosen)
    assert chosen == set(panel.rows_in_polygon(drawn[0]).tolist())
    assert panel.view.lasso.isVisible()
    # the lasso's outline is drawn over the selection's white rings, not hidden under them
    lasso, rings = panel.view.lasso, panel.picked
    assert lasso.parentItem() is rings.parentItem() and lasso.zValue() > rings.zValue()
    wait_answer(qtbot, gallery)  # the gallery shows the lassoed crops
    assert tile_keys(gallery) == list(state.frame_set[:60])
    assert "Map selection" in gallery.caption.text()

    state.set_frame_set((), "map")  # Clear selection: back to neighbours, outlined on the map
    wait_answer(qtbot, gallery)
    assert state.frame_set_source == "gallery" and tile_keys(gallery) == list(state.frame_set)
    px, py = panel.picked.getData()
    np.testing.assert_allclose(np.c_[px, py], xy[index.rows_of(state.frame_set)])
    assert not panel.view.lasso.isVisible()


def test_point_brushes_paint_each_point_its_groups_colour(qtbot):
    import pyqtgraph as pg

    from mcss_studio.gui.embedding_map import set_point_brushes

    plot = pg.PlotWidget()
    qtbot.addWidget(plot)
    plot.resize(300, 300)
    plot.setBackground("k")
    plot.hideAxis("left")
    plot.hideAxis("bottom")
    item = pg.ScatterPlotItem(x=[0.0, 1.0, 2.0], y=[0.0, 1.0, 0.0], size=14, pen=None,
                              pxMode=True)
    plot.addItem(item)
    plot.setRange(xRange=(-1, 3), yRange=(-1, 2), padding=0)
    plot.show()
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    brushes = [pg.mkBrush(*c) for c in colours]

    def painted() -> list[tuple[int, int, int]]:
        image = plot.grab().toImage()
        out = []
        for x, y in ((0.0, 0.0), (1.0, 1.0), (2.0, 0.0)):
            p = plot.mapFromScene(plot.getViewBox().mapViewToScene(pg.Point(x, y)))
            c = image.pixelColor(p.x(), p.y())
            out.append((c.red(), c.green(), c.blue()))
        return out

    for group in ([0, 1, 2], [2, 2, 0], [1, 0, 1]):
        set_point_brushes(item, np.array(group), brushes)
        assert painted() == [colours[g] for g in group]
    with pytest.raises(ValueError):
        set_point_brushes(item, np.array([0, 1]), brushes)


def test_screenshots_of_mine_now_and_a_lasso_from_the_command_line(tmp_path, trained_project):
    import os
    import subprocess
    import sys

    from PySide6.QtGui import QImage

    env = {**os.environ, "MCSS_STUDIO_CACHE": str(tmp_path / "cache"),
           "MCSS_STUDIO_SETTINGS": str(tmp_path / "s.ini")}
    for panel, flag in (("inspector", "--mine-now"), ("map", "--lasso")):
        out = tmp_path / f"{panel}.png"
        res = subprocess.run(
            [sys.executable, "-m", "mcss_studio.gui.app", str(trained_project.data),
             "--checkpoint", str(trained_project.checkpoint), "--frame", "5", "--panel", panel,
             flag, "--screenshot", str(out), "--size", "900x600"],
            env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        assert "timed out" not in res.stderr  # it waited for the mining / the lasso's answer
        assert f"panel {panel}" in res.stdout and QImage(str(out)).width() >= 800
