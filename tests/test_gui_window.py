"""The Studio window under Xvfb: open, scrub, step, play, infer, render, and bad inputs.

Run as `xvfb-run -a .venv/bin/pytest -q tests/test_gui_*.py` (vispy needs OpenGL).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage

from mcss_studio.core.joints import LEFT_COLOR, RIGHT_COLOR
from mcss_studio.gui.dialogs import SHORTCUTS
from mcss_studio.gui.main_window import MainWindow
from mcss_studio.gui.workers import LatestRequestWorker
from tests.gui_fixtures import make_checkpoint, make_recording, scene3d

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("private_studio_dirs")]
WAIT_MS = 60000  # generous: the machine is shared; nothing here measures time


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("gui")
    rec = make_recording(root / "rec", frames=30)
    ckpt = make_checkpoint(root / "tiny.safetensors")
    return rec, ckpt


@pytest.fixture
def window(qtbot):
    w = MainWindow(interactive=False)
    qtbot.addWidget(w)
    w.resize(1100, 650)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=WAIT_MS)
    yield w
    w.close()


def to_array(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h = image.width(), image.height()
    buf = np.frombuffer(image.constBits(), np.uint8, count=image.bytesPerLine() * h)
    return buf.reshape(h, image.bytesPerLine())[:, : w * 3].reshape(h, w, 3).copy()


def open_ready(qtbot, window, path: Path) -> None:
    assert window.open_path(path)
    qtbot.waitUntil(lambda: not window.session.cache_busy and window.state.media.has_proxies,
                    timeout=WAIT_MS)


def test_open_scrub_step_infer_and_render(qtbot, window, assets):
    rec, ckpt = assets
    open_ready(qtbot, window, rec)
    s, grid = window.state, window.grid
    assert [v.name for v in grid.views] == ["cam_a", "cam_b", "cam_c"]
    assert {(v.native_w, v.native_h) for v in grid.views} == {(160, 120), (96, 128), (128, 96)}
    assert all(v.frame_index == 0 for v in grid.views)

    # scrubbing the timeline shows the frame in every view at once (proxies)
    window.transport.slider.setValue(7)
    assert s.frame == 7 and all(v.frame_index == 7 for v in grid.views)
    # keyboard stepping
    for key, mod, expected in ((Qt.Key.Key_Right, Qt.KeyboardModifier.NoModifier, 8),
                               (Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier, 18),
                               (Qt.Key.Key_Left, Qt.KeyboardModifier.ShiftModifier, 8),
                               (Qt.Key.Key_Left, Qt.KeyboardModifier.NoModifier, 7),
                               (Qt.Key.Key_End, Qt.KeyboardModifier.NoModifier, 29),
                               (Qt.Key.Key_Right, Qt.KeyboardModifier.NoModifier, 29),
                               (Qt.Key.Key_Home, Qt.KeyboardModifier.NoModifier, 0)):
        qtbot.keyClick(window, key, mod)
        assert s.frame == expected, key
        assert window.transport.frame_box.value() == expected
    window.transport.frame_box.setValue(12)  # jump to frame
    assert s.frame == 12

    # full resolution arrives from the background decoder
    qtbot.waitUntil(lambda: window.grid.full_res_frame == 12, timeout=WAIT_MS)
    assert all(v.full_res and v.frame_index == 12 for v in grid.views)

    # live inference answers for the shown frame, placed in the world (calibrated)
    window.open_checkpoint(ckpt)
    qtbot.waitUntil(lambda: s.prediction is not None and s.prediction.frame == s.frame,
                    timeout=WAIT_MS)
    pred = s.prediction
    assert pred.pose_cam.shape == (3, 17, 3) and pred.points2d.shape == (3, 17, 2)
    assert pred.pose_world is not None and np.all(np.isfinite(pred.pose_world))
    assert window.state.device == "cpu"
    assert window.status_labels["device"].text() == "device: cpu"
    assert window.status_labels["checkpoint"].text() == "checkpoint: tiny.safetensors"
    window.session.update_rates()
    assert window.status_labels["inference"].text().startswith("inference: ")
    assert window.status_labels["display"].text().endswith(" fps")
    s.set_frame(20)
    qtbot.waitUntil(lambda: s.prediction.frame == 20, timeout=WAIT_MS)
    assert all(v.skeleton is not None and v.gt is not None for v in grid.views)

    # every camera view renders a non-blank picture
    for view in grid.views:
        img = to_array(view.grab().toImage())
        assert img.std() > 10, view.name
    # the 3D view renders the skeleton: left bones blue, right bones red, GT green
    s.set_overlay("gt", False)
    window.view3d.reset_camera()
    rgb = window.view3d.render_image()[..., :3].astype(int)
    assert rgb.std() > 5

    def near(color):
        return int((np.abs(rgb - np.array(color)).sum(axis=2) < 60).sum())

    assert near(LEFT_COLOR) > 0 and near(RIGHT_COLOR) > 0
    s.set_overlay("gt", True)
    rgb = window.view3d.render_image()[..., :3].astype(int)
    assert (np.abs(rgb - np.array([64, 230, 89])).sum(axis=2) < 60).sum() > 0


def test_playback_advances_and_loops(qtbot, window, assets):
    open_ready(qtbot, window, assets[0])
    s = window.state
    s.set_frame(25)
    s.set_speed(4.0)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert s.playing
    qtbot.waitUntil(lambda: s.frame < 25, timeout=WAIT_MS)  # wrapped around the end
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not s.playing
    stopped_at = s.frame
    qtbot.wait(100)
    assert s.frame == stopped_at
    assert window.session.display_rate.stamps  # frames were counted as displayed


def test_views_maximise_zoom_and_overlays(qtbot, window, assets):
    open_ready(qtbot, window, assets[0])
    grid, s = window.grid, window.state
    view = grid.views[1]
    qtbot.mouseDClick(view, Qt.MouseButton.LeftButton)
    assert s.maximised_camera == 1
    assert view.isVisible() and not grid.views[0].isVisible()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert s.maximised_camera == -1 and grid.views[0].isVisible()

    view.zoom_at(QPointF(view.width() / 2, view.height() / 2), 2.0)
    assert view.zoom == 2.0
    other = grid.views[0]
    assert other.zoom == 1.0  # zoom is per view
    qtbot.mouseClick(view, Qt.MouseButton.MiddleButton)
    assert view.zoom == 1.0

    assert all(v.box is not None for v in grid.views)
    window.overlay_actions["box"].trigger()
    assert not s.overlays["box"] and all(v.box is None for v in grid.views)
    window.overlay_actions["gt"].trigger()
    assert all(v.gt is None for v in grid.views)


def test_twelve_views_of_mixed_orientation(qtbot, window, tmp_path):
    cams = tuple((f"c{i:02d}", 64, 48) if i % 2 else (f"c{i:02d}", 48, 64) for i in range(12))
    rec = make_recording(tmp_path / "twelve", frames=6, cameras=cams)
    open_ready(qtbot, window, rec)
    views = window.grid.views
    assert len(views) == 12 and all(v.isVisible() for v in views)
    geoms = {(v.x(), v.y()) for v in views}
    assert len(geoms) == 12  # no two views on top of each other
    for v in views:
        assert to_array(v.grab().toImage()).std() > 5


def test_latest_request_wins():
    release = threading.Event()
    started = threading.Event()
    seen: list[int] = []

    class Slow(LatestRequestWorker):
        def process(self, request):
            started.set()
            release.wait(30)
            seen.append(request)
            return request

    w = Slow()
    w.start()
    w.submit(1)
    assert started.wait(30)
    for r in (2, 3, 4):
        w.submit(r)
    release.set()
    for _ in range(3000):
        if w.idle() and len(seen) == 2:
            break
        threading.Event().wait(0.01)
    w.stop()
    assert seen == [1, 4] and w.dropped == 2


def test_bad_inputs_show_dialogs_and_window_stays_usable(qtbot, window, assets, tmp_path):
    rec, ckpt = assets
    not_rec = tmp_path / "notes"
    not_rec.mkdir()
    (not_rec / "readme.txt").write_text("hello")
    assert not window.open_path(not_rec)
    assert "notes" in window.state.last_error and "not a recording" in window.state.last_error
    assert window.error_boxes[-1].text() == window.state.last_error
    assert window.state.sequence is None

    broken = tmp_path / "broken"
    shutil.copytree(rec, broken)
    (broken / "cam_b.mp4").write_bytes(b"this is no video")
    assert not window.open_path(broken)
    assert "cam_b.mp4" in window.state.last_error

    missing = tmp_path / "missing"
    shutil.copytree(rec, missing)
    (missing / "sequence.toml").write_text("[offsets]\ncam_a = 0\ncam_b = 1\ncam_c = 0\n")
    (missing / "cam_b.mp4").unlink()
    assert not window.open_path(missing)
    assert "cam_b" in window.state.last_error

    open_ready(qtbot, window, rec)  # still usable
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    window.open_checkpoint(corrupt)
    qtbot.waitUntil(lambda: "corrupt.safetensors" in (window.state.last_error or ""),
                    timeout=WAIT_MS)
    window.open_checkpoint(tmp_path / "absent.safetensors")
    qtbot.waitUntil(lambda: "absent.safetensors" in window.state.last_error, timeout=WAIT_MS)
    assert window.state.checkpoint is None
    # a good checkpoint after bad ones still works
    window.open_checkpoint(ckpt)
    qtbot.waitUntil(lambda: window.state.prediction is not None, timeout=WAIT_MS)


def test_incompatible_checkpoint_is_refused(qtbot, window, assets, tmp_path):
    import torch

    from mcss_studio.core.checkpoint import save_checkpoint
    from mcss_studio.core.model import MCSSModel, ModelConfig

    torch.manual_seed(0)
    model = MCSSModel(ModelConfig(width=8, embedding_dim=8, pose_hidden=16, orientation_hidden=8,
                                  num_joints=14))
    path = tmp_path / "fourteen.safetensors"
    save_checkpoint(path, model, meta={"crop_size": 32})
    open_ready(qtbot, window, assets[0])
    window.open_checkpoint(path)
    qtbot.waitUntil(lambda: window.state.last_error is not None, timeout=WAIT_MS)
    assert "fourteen.safetensors" in window.state.last_error
    assert window.state.checkpoint is None


def test_recent_projects_drag_and_drop_and_help(qtbot, window, assets):
    rec = assets[0]
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(rec))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert window.state.sequence is not None and window.state.sequence.path == rec
    assert window.recent_paths()[0] == str(rec.resolve())
    assert window.recent_menu.actions()[0].text() == str(rec.resolve())

    dlg = window.show_shortcuts()
    keys = [dlg.table.item(r, 0).text() for r in range(dlg.table.rowCount())]
    assert keys == [k for k, _ in SHORTCUTS]
    assert any("Space" in k for k in keys) and any("Home" in k for k in keys)
    dlg.close()


def test_demo_is_generated_with_progress_then_opened(qtbot, window, assets, tmp_path,
                                                     monkeypatch):
    import mcss_studio.core.synth as synth

    calls = []

    def fake_generate(out, preset="demo", progress=None, **kw):
        calls.append(preset)
        out = Path(out)
        seq = out / "S1_walk"
        shutil.copytree(assets[0], seq)
        (out / "manifest.json").write_text(json.dumps({
            "format": "mcss-multiview-dataset", "version": 1,
            "sequences": [{"name": "S1_walk", "path": "S1_walk", "subject": "S1",
                           "action": "walk"}], "splits": {}}))
        for i in range(3):
            if progress is not None:
                progress(i + 1, 3)
        return out

    monkeypatch.setattr(synth, "generate", fake_generate)
    window.open_demo()
    qtbot.waitUntil(lambda: window.state.sequence is not None, timeout=WAIT_MS)
    assert calls == ["demo"]
    assert window.sequence_box.currentText() == "S1_walk"
    demo = tmp_path / "cache" / "demo"
    assert (demo / "manifest.json").is_file() and (demo / "mcss-project.toml").is_file()
    assert window.state.project == demo
    qtbot.waitUntil(lambda: not window.session.cache_busy, timeout=WAIT_MS)
    assert (demo / "cache" / "proxies").is_dir()


def _run_cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, "MCSS_STUDIO_CACHE": str(tmp_path / "clicache"),
           "MCSS_STUDIO_SETTINGS": str(tmp_path / "cli.ini")}
    return subprocess.run([sys.executable, "-m", "mcss_studio.gui.app", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_screenshot_cli_renders_window_and_panels(assets, tmp_path):
    rec, ckpt = assets
    out = tmp_path / "shot.png"
    res = _run_cli([str(rec), "--checkpoint", str(ckpt), "--screenshot", str(out), "--frame",
                    "5", "--size", "900x500"], tmp_path)
    assert res.returncode == 0, res.stderr
    img = to_array(QImage(str(out)))
    assert img.shape[:2] == (500, 900) and img.std() > 10
    out3d = tmp_path / "shot3d.png"
    res = _run_cli([str(rec), "--checkpoint", str(ckpt), "--screenshot", str(out3d),
                    "--panel", "3d"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert to_array(QImage(str(out3d))).std() > 5
    settings = tmp_path / "cli.ini"  # a headless run leaves the recent-files list alone
    assert not settings.exists() or "recent" not in settings.read_text()


def test_screenshot_cli_reports_bad_input_on_one_line(tmp_path):
    res = _run_cli([str(tmp_path / "nowhere"), "--screenshot", str(tmp_path / "x.png")],
                   tmp_path)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("mcss-studio:")]
    assert len(lines) == 1 and "does not exist" in lines[0]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "x.png").exists()


def test_uncalibrated_recording_shows_centred_pose(qtbot, window, assets, tmp_path):
    rec = make_recording(tmp_path / "nocal", frames=8, calibrated=False)
    open_ready(qtbot, window, rec)
    assert scene3d(window.view3d).frusta.visible is False
    window.open_checkpoint(assets[1])
    s = window.state
    qtbot.waitUntil(lambda: s.prediction is not None and s.prediction.frame == s.frame,
                    timeout=WAIT_MS)
    pred = s.prediction
    assert pred.pose_world is None
    regions = pred.regions
    for c in range(3):  # drawn inside the crop the model saw
        assert np.all(pred.points2d[c] >= regions[c, :2] - 1e-6)
        assert np.all(pred.points2d[c] <= regions[c, 2:] + 1e-6)
    assert all(v.gt is None for v in window.grid.views)
    assert window.view3d.render_image()[..., :3].std() > 5


def test_inference_passes_each_crops_viewing_ray(qtbot, window, assets, monkeypatch):
    from mcss_studio.core.inference import Predictor

    seen = []
    original = Predictor.predict

    def spy(self, crops, rays=None):
        seen.append(rays)
        return original(self, crops, rays=rays)

    monkeypatch.setattr(Predictor, "predict", spy)
    rec, ckpt = assets
    window.open_checkpoint(ckpt)
    open_ready(qtbot, window, rec)
    qtbot.waitUntil(lambda: any(r is not None for r in seen), timeout=WAIT_MS)
    rays = next(r for r in seen if r is not None)
    assert rays.shape == (len(window.state.sequence.cameras), 3) and np.isfinite(rays).all()
