"""Opening in the Studio where files cannot or must not be written: a recording is opened before
the user is asked to make a project in it, a read-only recording is viewed with its cache in the
user cache folder, and an unwritable cache folder is one dialog while playback goes on."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from mcss_studio.core.project import PROJECT_FILE, create_project
from mcss_studio.gui.main_window import MainWindow
from tests.gui_fixtures import make_recording
from tests.readonly import read_only

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("private_studio_dirs")]
WAIT_MS = 60000  # generous: the machine is shared; nothing here measures time


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    return make_recording(tmp_path_factory.mktemp("open") / "rec", frames=8)


@pytest.fixture
def asked(monkeypatch) -> list[str]:
    """Every "Create a project?" question, each answered Yes."""
    questions: list[str] = []

    def answer_yes(_parent, title, _text, *args, **kwargs):
        questions.append(title)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr("mcss_studio.gui.main_window.QMessageBox.question", answer_yes)
    return questions


def make_window(qtbot, interactive: bool) -> MainWindow:
    window = MainWindow(interactive=interactive, with_3d=False)
    qtbot.addWidget(window)
    window.resize(640, 400)
    window.show()
    return window


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b""
            for p in sorted(folder.rglob("*"))}


def truncated_video(folder: Path) -> str:
    video = folder / "cam_b.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    return "cam_b.mp4"


def nan_calibration(folder: Path) -> str:
    doc = json.loads((folder / "calibration.json").read_text())
    doc["cameras"]["cam_a"]["K"][0][0] = float("nan")
    (folder / "calibration.json").write_text(json.dumps(doc))
    return "calibration.json"


@pytest.mark.parametrize("damage", [truncated_video, nan_calibration])
def test_a_bad_recording_is_refused_before_anything_is_written_or_asked(
    qtbot, recording, tmp_path, asked, damage
):
    bad = shutil.copytree(recording, tmp_path / "bad")
    culprit = damage(bad)
    before = listing(bad)
    window = make_window(qtbot, interactive=True)
    assert not window.open_path(bad)
    assert asked == []  # the question comes only after the recording opened
    assert listing(bad) == before and not (bad / PROJECT_FILE).exists()
    assert culprit in window.state.last_error and "\n" not in window.state.last_error
    assert [b.text() for b in window.error_boxes] == [window.state.last_error]
    assert window.state.sequence is None


def test_a_good_recording_is_opened_then_asked_about_a_project(qtbot, recording, tmp_path,
                                                                asked):
    rec = shutil.copytree(recording, tmp_path / "rec")
    window = make_window(qtbot, interactive=True)
    assert window.open_path(rec)
    assert asked == ["Create a project?"]
    assert (rec / PROJECT_FILE).is_file() and window.state.project == rec
    assert window.session.cache_dir == rec / "cache"
    assert window.state.status["notice"] == ""


def test_a_read_only_recording_is_viewed_with_its_cache_in_the_user_cache(
    qtbot, recording, tmp_path, asked
):
    rec = shutil.copytree(recording, tmp_path / "rec")
    before = listing(rec)
    window = make_window(qtbot, interactive=True)
    with read_only(rec):
        assert window.open_path(rec), window.state.last_error
        assert asked == []  # nothing to ask: no project can be made there
        user_cache = tmp_path / "cache" / "cache"
        assert window.session.cache_dir == user_cache and window.state.project is None
        assert window.state.status["notice"] == f"read-only recording: cache in {user_cache}"
        qtbot.waitUntil(lambda: window.state.media.has_proxies, timeout=WAIT_MS)
        window.close()
    assert listing(rec) == before
    assert any(user_cache.rglob("*")) and window.state.last_error is None


def test_a_failed_project_creation_still_opens_the_recording(qtbot, recording, tmp_path,
                                                            asked, monkeypatch):
    def refused(root, _source):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(root / PROJECT_FILE))

    monkeypatch.setattr("mcss_studio.gui.session.create_project", refused)
    window = make_window(qtbot, interactive=True)
    assert window.open_path(recording)
    assert asked == ["Create a project?"] and window.state.sequence is not None
    notice = window.state.status["notice"]
    assert notice.startswith("no project made (Permission denied): cache in ")
    assert window.state.last_error is None


def test_an_unwritable_cache_folder_is_one_dialog_and_playback_goes_on(
    qtbot, capfd, recording, tmp_path, monkeypatch
):
    cache = tmp_path / "ro-cache"
    cache.mkdir()
    monkeypatch.setenv("MCSS_STUDIO_CACHE", str(cache))
    window = make_window(qtbot, interactive=False)
    with read_only(cache):
        assert window.open_path(recording)
        assert len(window.error_boxes) == 1
        message = window.state.last_error
        assert message.startswith(f"{cache / 'cache'}: cannot write the cache (")
        assert "set MCSS_STUDIO_CACHE to a writable folder" in message and "\n" not in message
        assert window.state.status["cache"] == "proxies: none (cache folder not writable)"
        assert not window.session.cache_busy
        # playback without proxies: frames come from the full-resolution decoder
        qtbot.waitUntil(lambda: window.grid.full_res_frame == 0, timeout=WAIT_MS)
        with qtbot.waitSignal(window.grid.frameShown, timeout=WAIT_MS,
                              check_params_cb=lambda t: t == 5):
            window.state.set_frame(5)
        assert window.open_path(recording)  # the same folder again: no second dialog
        assert len(window.error_boxes) == 1
        window.close()
    assert "Traceback" not in capfd.readouterr().err


def test_a_projects_unwritable_cache_names_it_without_the_user_cache_hint(
    qtbot, recording, tmp_path
):
    rec = shutil.copytree(recording, tmp_path / "rec")
    create_project(rec, rec)
    (rec / "cache").mkdir()
    window = make_window(qtbot, interactive=False)
    with read_only(rec / "cache"):
        assert window.open_path(rec)
        assert window.state.last_error.startswith(f"{rec / 'cache'}: cannot write the cache (")
        assert window.state.last_error.endswith("); make it writable; playing without proxies")
        window.close()


def test_a_cache_write_failing_mid_build_is_one_dialog(qtbot, capfd, recording, tmp_path,
                                                       monkeypatch):
    def disk_full(seq, cache_dir, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(cache_dir / "crops" / "0.u8"))

    monkeypatch.setattr("mcss_studio.core.media.build_cache", disk_full)
    window = make_window(qtbot, interactive=False)
    assert window.open_path(recording)
    qtbot.waitUntil(lambda: window.state.last_error is not None, timeout=WAIT_MS)
    assert window.state.last_error == (
        f"{tmp_path / 'cache' / 'cache' / 'crops' / '0.u8'}: cannot write the cache (No space "
        "left on device); free space there or set MCSS_STUDIO_CACHE to a folder on another "
        "disk; playing without proxies")
    assert window.state.status["cache"] == "proxies: none (not written)"
    assert len(window.error_boxes) == 1 and window.state.sequence is not None
    window.close()
    assert "Traceback" not in capfd.readouterr().err


def test_the_demo_in_an_unwritable_cache_folder_is_one_line(qtbot, capfd, tmp_path,
                                                           monkeypatch):
    cache = tmp_path / "ro-cache"
    cache.mkdir()
    monkeypatch.setenv("MCSS_STUDIO_CACHE", str(cache))
    window = make_window(qtbot, interactive=False)
    with read_only(cache):
        window.open_demo()
        qtbot.waitUntil(lambda: window.state.last_error is not None, timeout=WAIT_MS)
    message = window.state.last_error
    assert message.startswith(str(cache / "demo")) and "\n" not in message
    assert "Read-only file system" in message or "Permission denied" in message
    assert window.state.sequence is None and len(window.error_boxes) == 1
    window.close()
    assert "Traceback" not in capfd.readouterr().err
