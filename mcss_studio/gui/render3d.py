"""Where the 3D view's scene renders: on a thread of its own, or on the UI thread.

With software OpenGL (Mesa llvmpipe: remote desktops, VMs, Xvfb) a render of the 3D scene costs
the UI thread 5-15 ms of vispy's Python and Mesa's rasterising, and now and then 25-45 ms: on a
2-core machine busy with inference and training, the largest stall of the event loop during
playback. So where a headless OpenGL context can be made off the UI thread (EGL; Mesa's
surfaceless platform needs no display), `ThreadedRenderer` owns the scene on a thread of its
own: the UI thread only posts plain data and mouse events to it and shows the images it sends
back, and its Python work yields the interpreter to the UI thread at every switch interval.
Elsewhere (no EGL, or `MCSS_STUDIO_3D_THREAD=0`) `InlineRenderer` renders on the UI thread
through a hidden Qt OpenGL window, during playback a few ms after the camera views' paints
(`pass_budget`). A process uses one or the other: vispy keeps its current canvas in
process-wide state, so its scenes must all be drawn from one thread.

Both guarantee the same to the view: calls reach the scene in the order they were posted;
renders are coalesced (never more than one pending per scene); each render's image reaches
`rendered` on the UI thread; `call_sync` runs after everything posted before it and returns its
result; after `stop` the scene is closed, nothing renders and no window is left behind.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable

import numpy as np
import shiboken6
from PySide6.QtCore import QObject, Qt, Signal

from .pass_budget import PassDeferrer
from .scene3d_canvas import Scene3D

THREAD_ENV = "MCSS_STUDIO_3D_THREAD"  # "0": render on the UI thread
SYNC_TIMEOUT_S = 30.0  # a render of a fresh context compiles shaders: up to seconds
_egl_app: list = []  # the vispy EGL Application, made once ([None]: not available)


def egl_application():
    """vispy's EGL Application, or None where none can be made. Mesa is pointed at its
    surfaceless platform unless the user chose one (EGL_PLATFORM), since vispy's EGL backend
    opens the default display with DISPLAY unset, which Mesa cannot do otherwise."""
    if not _egl_app:
        chosen = os.environ.get("EGL_PLATFORM")
        if chosen is None:
            os.environ["EGL_PLATFORM"] = "surfaceless"
        try:
            from vispy import app

            _egl_app.append(app.Application("egl"))
        except Exception:  # noqa: BLE001 - no EGL library, no driver, no display: inline
            _egl_app.append(None)
        finally:
            if chosen is None:
                os.environ.pop("EGL_PLATFORM", None)
    return _egl_app[0]


def threaded_rendering_wanted() -> bool:
    return os.environ.get(THREAD_ENV, "1") != "0" and egl_application() is not None


class Renderer(QObject):
    """The scene's owner. `rendered` carries each render's RGBA image to the UI thread."""

    rendered = Signal(object)

    def call(self, fn: Callable[[Scene3D], object]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def call_sync(self, fn: Callable[[Scene3D], object]) -> object:  # pragma: no cover
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def render_sync(self) -> np.ndarray:
        """Render now (after everything posted), show and return the image; an empty image
        once stopped."""
        image = self.call_sync(lambda scene: scene.render())
        if image is None:
            return np.zeros((0, 0, 4), np.uint8)
        self.rendered.emit(image)
        return image


class _RenderThread(threading.Thread):
    """The one thread every threaded scene of the process lives on: vispy keeps the current
    canvas in process-wide state, so two threads drawing would send each other's OpenGL
    commands to the wrong context. It runs posted calls in order, then renders each scene that
    asked for it since, once. A call that fails is reported on stderr and answered with None;
    the thread goes on. A daemon: a process that ends does not wait for it."""

    def __init__(self) -> None:
        super().__init__(name="mcss-3d-render", daemon=True)
        self._cond = threading.Condition()
        self._calls: list[tuple[Callable[[], object], dict | None]] = []
        self._dirty: list[ThreadedRenderer] = []

    def post(self, fn: Callable[[], object], reply: dict | None = None) -> None:
        with self._cond:
            self._calls.append((fn, reply))
            self._cond.notify()

    def mark_dirty(self, renderer: ThreadedRenderer) -> None:
        with self._cond:
            if renderer not in self._dirty:
                self._dirty.append(renderer)
            self._cond.notify()

    def run(self) -> None:
        from .workers import _lower_thread_priority

        _lower_thread_priority(5)  # the UI thread first; inference (+10) after the 3D view
        while True:
            with self._cond:
                while not (self._calls or self._dirty):
                    self._cond.wait()
                calls, self._calls = self._calls, []
            for fn, reply in calls:
                result = _reported(fn)
                if reply is not None:
                    reply["result"] = result
                    reply["done"].set()
            with self._cond:
                dirty, self._dirty = self._dirty, []
            for renderer in dirty:  # one render for every call of the batch
                _reported(renderer.render_and_deliver)


def _reported(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a broken scene must not end the thread of the others
        traceback.print_exc()
        return None


_thread: list[_RenderThread] = []


def _render_thread() -> _RenderThread:
    """The process's render thread, started on first use (only the UI thread asks)."""
    if not _thread:
        _thread.append(_RenderThread())
        _thread[0].start()
    return _thread[0]


class ThreadedRenderer(Renderer):
    """A scene made and rendered on the process's render thread (an EGL context)."""

    def __init__(self, size: tuple[int, int], dpi: float, parent=None) -> None:
        super().__init__(parent)
        self.scene: Scene3D | None = None  # touched on the render thread only
        self.failure: str | None = None  # why the scene could not be made
        self._thread = _render_thread()
        self._thread.post(lambda: self._make_scene(size, dpi))

    def _make_scene(self, size: tuple[int, int], dpi: float) -> None:
        try:
            self.scene = Scene3D(egl_application(), size, dpi,
                                 lambda: self._thread.mark_dirty(self))
        except Exception as exc:  # noqa: BLE001 - no context: the view renders inline
            self.failure = f"3D view: {exc}"

    def render_and_deliver(self) -> None:
        """On the render thread: render and send the image (queued to the UI thread)."""
        if self.scene is not None:
            self.rendered.emit(self.scene.render())

    def call(self, fn: Callable[[Scene3D], object]) -> None:
        self._thread.post(lambda: None if self.scene is None else fn(self.scene))

    def call_sync(self, fn: Callable[[Scene3D], object]) -> object:
        return self._run_and_wait(lambda: None if self.scene is None else fn(self.scene))

    def _run_and_wait(self, fn: Callable[[], object]) -> object:
        """fn() on the render thread after everything posted before it; its result."""
        reply = {"done": threading.Event(), "result": None}
        self._thread.post(fn, reply)
        reply["done"].wait(SYNC_TIMEOUT_S)
        return reply["result"]

    def wait_idle(self) -> None:
        """Return once every call posted so far has run (tests, screenshots)."""
        self.call_sync(lambda _scene: None)

    def stop(self) -> None:
        """Close the scene on the render thread; nothing renders for this view any more."""
        def close() -> None:
            scene, self.scene = self.scene, None
            if scene is not None:
                scene.close()

        self._run_and_wait(close)


class InlineRenderer(Renderer):
    """The scene on the UI thread, in a hidden Qt OpenGL window that is never put on screen.
    That window has no parent: Qt composites a window through OpenGL when any widget under it,
    even a hidden window of its own, is an OpenGL widget. During playback a render waits a few
    ms while the camera views paint in the same event-loop pass (`pass_budget`)."""

    def __init__(self, size: tuple[int, int], playing: Callable[[], bool], parent=None) -> None:
        super().__init__(parent)
        import vispy

        vispy.use("pyside6")
        self.stopped = False
        # during playback a render waits for a pass without camera view paints
        self.deferrer = PassDeferrer(self, lambda: self.render_now(), playing)
        self.scene = Scene3D(None, size, None, self.request_render)
        self.scene.canvas.create_native()
        native = self.native = self.scene.canvas.native
        native.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
        native.setAttribute(Qt.WidgetAttribute.WA_QuitOnClose, False)
        native.show()
        self.destroyed.connect(native.deleteLater)  # a view deleted without `stop`

    def call(self, fn: Callable[[Scene3D], object]) -> None:
        if not self.stopped:
            fn(self.scene)

    def call_sync(self, fn: Callable[[Scene3D], object]) -> object:
        return None if self.stopped else fn(self.scene)

    def request_render(self) -> None:
        if not self.stopped:
            self.deferrer.request()

    def render_now(self) -> None:
        self.deferrer.cancel()
        if not self.stopped:
            self.rendered.emit(self.scene.render())

    def stop(self) -> None:
        """Delete the hidden window now, on this (the UI) thread. It has no Qt parent, so
        otherwise its Python wrapper would delete it whenever it is collected, and a
        collection that runs on a worker thread would destroy a widget there (Qt forbids
        that; it deadlocked a test run)."""
        self.stopped = True
        self.deferrer.cancel()
        if shiboken6.isValid(self.native):
            shiboken6.delete(self.native)
