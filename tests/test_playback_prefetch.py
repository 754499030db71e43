"""Playback's read-ahead and pass budget (issue 13's stall), each rule on its own: a prepared
proxy is the same picture the UI thread would make, is used only for the frame and view size it
was made for, the store keeps only the newest request's frames, playback takes its frames from
it, the 3D view's render waits for a pass in which the camera views did not paint, and its
caption is not laid out again for every answer during playback."""

from __future__ import annotations

import numpy as np
import pytest

from mcss_studio.gui import pass_budget
from tests.gui_fixtures import make_recording, scene3d
from tests.test_gui_window import WAIT_MS, open_ready, to_array, window  # noqa: F401

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("private_studio_dirs")]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("prefetch") / "rec", frames=12)


def read_ahead(qtbot, prefetcher, media, frames, sizes) -> None:
    prefetcher.submit((media, frames, sizes))
    qtbot.waitUntil(prefetcher.idle, timeout=WAIT_MS)


def test_a_prepared_proxy_is_the_frame_fitted_and_only_for_its_frame_and_size(
        qtbot, window, recording):  # noqa: F811
    from mcss_studio.gui.player.prefetch import fit_to_view

    open_ready(qtbot, window, recording)
    media, prefetcher = window.state.media, window.session.prefetcher
    sizes = [(50, 37), None, (41, 55)]  # the second view zoomed: not read ahead
    read_ahead(qtbot, prefetcher, media, [4, 5], sizes)
    frame = prefetcher.take(media, 0, 4, (50, 37))
    rgb, scale = media.proxy_frame(0, 4)
    assert np.array_equal(frame.rgb, rgb) and frame.scale == scale
    assert np.array_equal(to_array(frame.fitted), to_array(fit_to_view(rgb, (50, 37))[0]))
    assert prefetcher.take(media, 0, 4, (50, 37)) is None  # taken once
    assert prefetcher.take(media, 1, 4, None) is None  # the zoomed view got nothing
    assert prefetcher.take(media, 2, 5, (40, 55)) is None  # made for another size: not used
    assert prefetcher.take(media, 0, 6, (50, 37)) is None  # never asked for


def test_the_store_keeps_only_the_newest_requests_frames(qtbot, window, recording):  # noqa: F811
    open_ready(qtbot, window, recording)
    media, prefetcher = window.state.media, window.session.prefetcher
    sizes = [(40, 30)] * len(window.grid.views)
    read_ahead(qtbot, prefetcher, media, [1, 2, 3], sizes)
    read_ahead(qtbot, prefetcher, media, [3, 4], sizes)
    assert sorted({t for _m, _c, t in prefetcher._ready}) == [3, 4]
    assert len(prefetcher._ready) == 2 * len(sizes)
    prefetcher.clear()
    assert prefetcher._ready == {}


def test_the_grid_shows_a_read_ahead_frame_as_it_would_decode_it(qtbot, window,  # noqa: F811
                                                                  recording):
    open_ready(qtbot, window, recording)
    grid, media, prefetcher = window.grid, window.state.media, window.session.prefetcher
    window.state.set_frame(2)
    decoded = [to_array(v.grab().toImage()) for v in grid.views]
    window.state.set_frame(3)
    read_ahead(qtbot, prefetcher, media, [2], [v.fitted_size() for v in grid.views])
    hits = prefetcher.hits
    window.state.set_frame(2)
    assert prefetcher.hits == hits + len(grid.views)  # every view took its prepared frame
    assert all(v.frame_index == 2 and not v.full_res for v in grid.views)
    for view, before in zip(grid.views, decoded):
        assert np.array_equal(to_array(view.grab().toImage()), before)


def test_playback_reads_ahead_the_frames_it_shows_next(qtbot, window, recording):  # noqa: F811
    open_ready(qtbot, window, recording)
    prefetcher, state = window.session.prefetcher, window.state
    asked: list = []
    submit = prefetcher.submit
    prefetcher.submit = lambda request: (asked.append(request[1]), submit(request))[1]
    state.set_frame(0)
    state.set_playing(True)
    qtbot.waitUntil(lambda: prefetcher.hits >= 3 * len(window.grid.views), timeout=WAIT_MS)
    state.set_playing(False)
    assert asked and all(len(frames) == 3 for frames in asked)
    steps = {(b - a) % state.num_frames for frames in asked for a, b in zip(frames, frames[1:])}
    assert steps and all(step >= 1 for step in steps)  # ahead of the clock, never behind
    qtbot.waitUntil(lambda: prefetcher._ready == {}, timeout=WAIT_MS)  # pausing empties it


def test_the_inline_3d_render_waits_for_a_pass_without_camera_view_paints(
        qtbot, window, recording):  # noqa: F811
    from mcss_studio.gui.view3d import View3D

    open_ready(qtbot, window, recording)
    window.view3d.release()  # a process draws its scenes from one thread (render3d)
    view = View3D(window.state, threaded=False)  # the UI thread renders (no EGL, or opted out)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitUntil(lambda: view.surface.image is not None, timeout=WAIT_MS)
    renderer = view.renderer
    renders: list[bool] = []
    render = renderer.render_now
    renderer.render_now = lambda: (renders.append(True), render())[1]
    window.state.playing = True  # the flag alone: no clock running, nothing else repaints

    pass_budget.note_heavy_work_done()
    renderer.deferrer.run()
    assert renders == [] and renderer.deferrer.timer.isActive()  # deferred past this pass
    for _ in range(pass_budget.MAX_DEFERRALS):
        pass_budget.note_heavy_work_done()
        renderer.deferrer.run()
    assert renders == [True]  # but never more than MAX_DEFERRALS times in a row

    pass_budget._last_heavy_end[0] = float("-inf")
    window.grid.views[0].update()  # a paint asked for, not delivered yet: it comes first
    renderer.deferrer.run()
    assert renders == [True] and renderer.deferrer.timer.isActive()
    pass_budget.note_heavy_work_done()  # ... and ran, a while ago
    pass_budget._last_heavy_end[0] = float("-inf")
    renderer.deferrer.run()
    assert renders == [True, True]  # nothing painted or asked for in this pass: at once
    window.state.playing = False
    pass_budget.note_heavy_work_done()
    renderer.deferrer.run()
    assert renders == [True, True, True]  # paused: at once (a user orbiting the view)
    view.release()


def test_the_3d_caption_names_the_frame_only_when_paused(qtbot, window, recording):  # noqa: F811
    from mcss_studio.core.pipeline import Prediction

    open_ready(qtbot, window, recording)
    view, state = window.view3d, window.state
    cams = len(window.grid.views)
    layouts: list[str] = []  # vispy lays the caption out again on every assignment
    info = scene3d(view).info
    info_type = type(info)
    text_property = info_type.text

    def counting_setter(visual, value):  # on the render thread when there is one
        if visual is info:
            layouts.append(value)
        text_property.fset(visual, value)

    monkey = pytest.MonkeyPatch()
    monkey.setattr(info_type, "text", property(text_property.fget, counting_setter))
    try:
        def answer(t: int) -> None:
            state.set_prediction(Prediction(t, np.zeros((cams, 17, 3)), np.zeros((17, 3)),
                                            np.zeros((cams, 17, 2))))
            view.refresh()

        state.playing = True
        for t in (1, 2, 3):
            answer(t)
        scene3d(view)  # everything posted has run
        assert len(layouts) == 1 and layouts[0].startswith("prediction live, world")  # once
        state.playing = False
        answer(4)
        scene3d(view)
        assert layouts[-1].startswith("prediction for frame 4,")
    finally:
        monkey.undo()


def test_a_frame_prepared_for_another_media_is_never_taken(qtbot, window, recording):  # noqa: F811
    open_ready(qtbot, window, recording)
    media, prefetcher = window.state.media, window.session.prefetcher
    read_ahead(qtbot, prefetcher, media, [4], [(50, 37)] + [None] * (len(window.grid.views) - 1))
    frame = prefetcher._ready.pop((id(media), 0, 4))
    other = object()  # a media made after the first was freed may get the same id
    prefetcher._ready[(id(other), 0, 4)] = frame
    assert prefetcher.take(other, 0, 4, (50, 37)) is None


def test_pausing_asks_for_full_resolution_with_or_without_read_ahead(qtbot, window,  # noqa: F811
                                                                     recording):
    open_ready(qtbot, window, recording)
    grid = window.grid
    for prefetcher in (window.session.prefetcher, None):
        grid.prefetcher = prefetcher
        grid._full_res_timer.stop()
        grid._playing_changed(False)
        assert grid._full_res_timer.isActive()


def test_training_plots_wait_for_a_pass_without_camera_view_paints(qtbot, window,  # noqa: F811
                                                                  recording):
    open_ready(qtbot, window, recording)
    deferrer = window.training_panel.redraw_deferrer
    assert deferrer.work == window.training_panel._redraw
    window.training_panel._redraw_timer.stop()  # its ticks are the runs made below
    redraws: list[bool] = []
    deferrer.work = lambda: redraws.append(True)
    window.state.playing = True  # the flag alone: no clock running, nothing else repaints
    pass_budget.note_heavy_work_done()
    deferrer.run()  # the panel's tick, in a pass where the camera views painted
    assert redraws == [] and deferrer.timer.isActive()
    pass_budget._last_heavy_end[0] = float("-inf")
    qtbot.waitUntil(lambda: redraws != [], timeout=WAIT_MS)  # in a pass of its own
    assert redraws == [True]
    window.state.playing = False
    pass_budget.note_heavy_work_done()
    deferrer.run()
    assert redraws == [True, True]  # paused: at once


def test_a_frame_finished_after_pausing_is_not_kept(qtbot, window, recording,  # noqa: F811
                                                    monkeypatch):
    from mcss_studio.gui.player import prefetch

    open_ready(qtbot, window, recording)
    media, prefetcher = window.state.media, window.session.prefetcher
    prepare = prefetch.prepare

    def pause_midway(*args):  # the pause arrives while the worker prepares the first frame
        prefetcher.clear()
        return prepare(*args)

    monkeypatch.setattr(prefetch, "prepare", pause_midway)
    prefetcher.process((media, [4, 5], [(50, 37), (50, 37)]))  # here, on this thread
    assert prefetcher._ready == {}
