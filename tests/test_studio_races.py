"""Sequence switches racing the Studio's workers: a request outlives the sequence it was made
for, and the closed sequence must never be read (no traceback, nothing shown to the user)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from mcss_studio.core.media import MediaAccess, MediaClosedError
from mcss_studio.core.sources.folder import open_recording
from mcss_studio.gui.main_window import MainWindow
from tests.gui_fixtures import make_checkpoint, make_recording

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("private_studio_dirs")]
WAIT_MS = 60000  # generous: the machine is shared; nothing here measures time
FRAMES = 6
SMALL_CAMERAS = (("a", 64, 48), ("b", 48, 64))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, list[str], Path]:
    """A manifest dataset of four tiny two-camera sequences, and a tiny checkpoint."""
    root = tmp_path_factory.mktemp("races") / "ds"
    names = [f"seq{i}" for i in range(4)]
    for name in names:
        make_recording(root / name, frames=FRAMES, cameras=SMALL_CAMERAS)
    (root / "manifest.json").write_text(json.dumps({
        "format": "mcss-multiview-dataset", "version": 1,
        "sequences": [{"name": n, "path": n} for n in names]}))
    return root, names, make_checkpoint(root.parent / "tiny.safetensors")


def test_a_read_after_close_is_refused_and_close_waits_for_a_read_in_flight(dataset):
    root, names, _ = dataset
    media = MediaAccess(open_recording(root / names[0]), None)
    order: list[str] = []
    reading, release = threading.Event(), threading.Event()
    decode = media.sequence.frame

    def slow_frame(cam: int, t: int):
        reading.set()
        release.wait()
        frame = decode(cam, t)  # the readers are still open: close has waited
        order.append("read")
        return frame

    media.sequence.frame = slow_frame
    reader = threading.Thread(target=lambda: media.full_frame(0, 1))
    reader.start()
    reading.wait()
    closer = threading.Thread(target=lambda: (media.close(), order.append("closed")))
    closer.start()
    release.set()
    reader.join()
    closer.join()
    assert order == ["read", "closed"]
    assert media.closed
    with pytest.raises(MediaClosedError):
        media.full_frame(0, 1)
    with pytest.raises(MediaClosedError):
        media.crops(1, 32, 0.2)
    assert media.proxy_frame(0, 1) is None
    media.close()  # a second close is harmless


def test_a_cache_build_on_shared_readers_never_starts_on_closed_media(dataset, tmp_path,
                                                                     monkeypatch):
    """Layouts that cannot be opened twice build on the player's own readers, under its lock."""
    root, names, _ = dataset
    monkeypatch.setattr("mcss_studio.core.media._private_copy", lambda seq: None)
    media = MediaAccess(open_recording(root / names[0]), tmp_path / "cache")
    media.close()
    with pytest.raises(MediaClosedError):
        media.build_caches()
    assert not any((tmp_path / "cache").rglob("*.u8"))
    assert not media.attach_caches()


def test_hundreds_of_switches_during_playback_never_read_a_closed_sequence(qtbot, capfd,
                                                                           dataset):
    """Every switch leaves a decode request, a frame for live inference and a cache build
    behind; none of them may reach the status bar, a dialog or stderr."""
    root, names, ckpt = dataset
    window = MainWindow(interactive=False, with_3d=False)
    qtbot.addWidget(window)
    window.resize(360, 240)  # small: painting is not what this test is about
    window.show()
    reports: list[str] = []
    window.session.message.connect(reports.append)
    window.state.errorRaised.connect(reports.append)
    assert window.open_path(root)
    window.session.open_checkpoint(ckpt)
    qtbot.waitUntil(lambda: window.state.checkpoint == ckpt, timeout=WAIT_MS)
    decoded, inferred = window.session.decoder.processed, window.session.inference.processed

    for i in range(200):
        window.session.choose_sequence(names[i % len(names)])
        window.state.set_playing(True)
        window.state.set_frame(i % FRAMES)
        qtbot.wait(1)  # let the workers' answers and the clock's ticks through

    assert window.state.sequence.name == names[199 % len(names)]
    assert window.session.decoder.processed > decoded  # the workers really worked meanwhile
    assert window.session.inference.processed > inferred
    window.close()
    assert reports == [] and window.state.last_error is None
    assert window.statusBar().currentMessage() == ""
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Container is not open" not in err, err[-2000:]
