"""Studio pieces that need no window: project files, pose placement, grid layout, rate meter."""

from __future__ import annotations

import numpy as np
import pytest

from mcss_studio.core.camera import Calibration
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.posing import fit_in_box, medoid_pose, place_in_world, project_views
from mcss_studio.core.project import PROJECT_FILE, create_project, is_project, read_project
from mcss_studio.gui.player.grid import best_grid
from mcss_studio.gui.rates import RateMeter
from tests.gui_fixtures import look_at, stick_figure


def _cameras(n: int = 4) -> list[Calibration]:
    cams = []
    for i in range(n):
        a = 2 * np.pi * i / n
        eye = np.array([3000 * np.cos(a), 3000 * np.sin(a), 1400.0])
        R = look_at(eye, np.array([0.0, 0.0, 900.0]))
        K = np.array([[300.0, 0, 160], [0, 300, 120], [0, 0, 1]])
        cams.append(Calibration(K=K, R=R, t=-R @ eye, width=320, height=240))
    return cams


def test_place_in_world_recovers_pose_from_exact_views():
    cams = _cameras()
    world = stick_figure(5)
    root_rel = [(world - world[0]) @ c.R.T for c in cams]  # camera-frame root-relative
    pose_cam = np.stack(root_rel)
    # crop regions centred on the projection of the pose's bounding-box centre
    centre = (world.min(0) + world.max(0)) / 2
    regions = []
    for c in cams:
        u, v = c.project(centre)
        regions.append([u - 50, v - 50, u + 50, v + 50])
    placed = place_in_world(pose_cam, cams, np.asarray(regions))
    assert np.abs(placed - world).max() < 1e-6


def test_medoid_pose_keeps_the_consistent_view():
    base = stick_figure(3)
    flipped = base.copy()
    flipped[:, 0] = -flipped[:, 0]  # a view that got the orientation wrong
    poses = np.stack([base, base + 5.0, flipped, base - 5.0])
    med = medoid_pose(poses)
    assert np.allclose(med, base + 5.0) or np.allclose(med, base - 5.0) or np.allclose(med, base)
    assert np.ptp(med[:, 0]) == pytest.approx(np.ptp(base[:, 0]))  # no shrinking


def test_project_views_projects_when_calibrated_and_fits_box_otherwise():
    cams = _cameras(2)
    world = stick_figure(0)
    pose_cam = np.stack([(world - world[0]) @ c.R.T for c in cams])
    regions = np.array([[10.0, 20, 110, 120], [0, 0, 50, 50]])
    pts = project_views(pose_cam, world, cams, regions)
    assert np.allclose(pts[0], cams[0].project(world))
    pts = project_views(pose_cam, None, [None, None], regions)
    for c in range(2):
        lo, hi = pts[c].min(0), pts[c].max(0)
        assert np.all(lo >= regions[c, :2] - 1e-9) and np.all(hi <= regions[c, 2:] + 1e-9)
        assert (hi - lo).max() == pytest.approx(0.8 * (regions[c, 2] - regions[c, 0]))
    # the fitted skeleton's extent is centred on the region's centre (60, 70)
    fitted = fit_in_box(pose_cam[0], regions[0])
    assert np.allclose((fitted.min(0) + fitted.max(0)) / 2, [60.0, 70.0])


def test_best_grid_prefers_layouts_that_show_more_image():
    assert best_grid([(1920, 1080)], 800, 600) == (1, 1)
    assert best_grid([(1920, 1080)] * 4, 1600, 900) == (2, 2)
    # four portrait views in a wide area: one row
    assert best_grid([(1080, 1920)] * 4, 1600, 700) == (1, 4)
    # 12 views always fit in a grid with every view placed
    rows, cols = best_grid([(640, 480)] * 12, 1200, 800)
    assert rows * cols >= 12


def test_rate_meter_counts_events_in_window():
    m = RateMeter(window_s=1.0)
    for i in range(11):
        m.tick(now=i * 0.1)
    assert m.rate(now=1.0) == pytest.approx(10.0)
    assert m.rate(now=5.0) == 0.0


def test_project_create_and_read_round_trip(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    proj = create_project(tmp_path / "proj", rec)
    assert is_project(tmp_path / "proj")
    again = read_project(tmp_path / "proj" / PROJECT_FILE)
    assert again.sources == [rec.resolve()] == proj.sources
    assert again.cache_dir == tmp_path / "proj" / "cache"
    assert not list((tmp_path / "proj").glob(".mcss-project-*"))  # no temp file left


@pytest.mark.parametrize(
    "text, problem",
    [
        ("format = 'other'\nsources = ['a']", "not an MCSS project"),
        ("format = 'mcss-project'\nsources = []", "sources"),
        ("format = 'mcss-project'\nsources = ['a'", "not valid TOML"),
    ],
)
def test_bad_project_files_raise_user_errors(tmp_path, text, problem):
    (tmp_path / PROJECT_FILE).write_text(text)
    with pytest.raises(UserInputError, match=problem) as info:
        read_project(tmp_path)
    assert PROJECT_FILE in str(info.value)


def test_installed_qt_binding_does_not_leak_references():
    from PySide6.QtCore import QObject

    from mcss_studio.gui import qtcompat

    assert not qtcompat.binding_leaks()  # pyproject excludes PySide6 6.12.0 before Python 3.12
    qtcompat.check_binding()
    obj = QObject()
    for _ in range(20000):  # would abort Python with "deallocating None" on a leaking binding
        obj.setObjectName("x")


def test_run_off_ui_thread_returns_result_and_reraises(qtbot):
    import threading

    import pytest

    from mcss_studio.core.errors import UserInputError
    from mcss_studio.gui.workers import run_off_ui_thread

    assert run_off_ui_thread(threading.current_thread) is not threading.main_thread()

    def fail():
        raise UserInputError("cam0.mp4", "not a readable video")

    with pytest.raises(UserInputError, match="cam0.mp4"):
        run_off_ui_thread(fail)
