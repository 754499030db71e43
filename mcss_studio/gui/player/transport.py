"""Timeline and transport controls, and the playback clock that drives the state's frame."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSpinBox,
    QStyle,
    QToolButton,
    QWidget,
)

from ..state import SPEEDS, StudioState


class PlaybackClock(QObject):
    """Advances the frame in real time (fps x speed); frames the display cannot keep up with are
    skipped, so playback never drifts behind the clock."""

    def __init__(self, state: StudioState, loop: bool = True, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.loop = loop
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self._t0 = 0.0
        self._frame0 = 0
        state.playingChanged.connect(self._playing_changed)
        state.speedChanged.connect(lambda _s: self._restart())
        state.sequenceChanged.connect(lambda _s: self.timer.stop())

    @property
    def rate(self) -> float:
        seq = self.state.sequence
        fps = float(seq.fps) if seq is not None and seq.fps > 0 else 25.0
        return fps * self.state.speed

    def _playing_changed(self, playing: bool) -> None:
        if playing:
            if self.state.frame >= self.state.num_frames - 1:
                self.state.set_frame(0)
            self._restart()
        else:
            self.timer.stop()

    def _restart(self) -> None:
        if not self.state.playing:
            return
        self._t0 = time.perf_counter()
        self._frame0 = self.state.frame
        self.timer.start(max(1, int(500.0 / self.rate)))  # tick at twice the frame rate

    def _tick(self) -> None:
        n = self.state.num_frames
        if n == 0:
            self.state.set_playing(False)
            return
        target = self._frame0 + int((time.perf_counter() - self._t0) * self.rate)
        if target >= n:
            if not self.loop:
                self.state.set_frame(n - 1)
                self.state.set_playing(False)
                return
            target %= n
            self._t0 = time.perf_counter()
            self._frame0 = target
        self.state.set_frame(target)


class TransportBar(QWidget):
    """Play/pause, step +-1 and +-10, first/last, timeline scrubber, frame box, speed."""

    def __init__(self, state: StudioState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        style = self.style()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)

        def button(icon, tip: str, slot) -> QToolButton:
            b = QToolButton(self)
            if isinstance(icon, str):
                b.setText(icon)
            else:
                b.setIcon(style.standardIcon(icon))
            b.setToolTip(tip)
            b.setAutoRaise(True)
            b.clicked.connect(slot)
            lay.addWidget(b)
            return b

        sp = QStyle.StandardPixmap
        self.first_button = button(sp.SP_MediaSkipBackward, "First frame (Home)", self._first)
        self.back10_button = button("-10", "Back 10 frames (Shift+Left)", lambda: state.step(-10))
        self.back_button = button(
            sp.SP_MediaSeekBackward, "Back 1 frame (Left)", lambda: state.step(-1)
        )
        self.play_button = button(sp.SP_MediaPlay, "Play / pause (Space)", state.toggle_playing)
        self.fwd_button = button(
            sp.SP_MediaSeekForward, "Forward 1 frame (Right)", lambda: state.step(1)
        )
        self.fwd10_button = button("+10", "Forward 10 frames (Shift+Right)", lambda: state.step(10))
        self.last_button = button(sp.SP_MediaSkipForward, "Last frame (End)", self._last)

        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setToolTip("Timeline: drag to scrub")
        self.slider.valueChanged.connect(state.set_frame)
        lay.addWidget(self.slider, 1)

        self.frame_box = QSpinBox(self)
        self.frame_box.setToolTip("Jump to frame (Ctrl+G)")
        self.frame_box.setKeyboardTracking(False)
        self.frame_box.valueChanged.connect(state.set_frame)
        # after typing a frame number, give the arrow keys back to the player
        self.frame_box.editingFinished.connect(self.frame_box.clearFocus)
        self.frame_box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        lay.addWidget(self.frame_box)
        self.total_label = QLabel("/ 0", self)
        lay.addWidget(self.total_label)
        self.time_label = QLabel("0:00.00", self)
        self.time_label.setMinimumWidth(60)
        lay.addWidget(self.time_label)

        self.speed_box = QComboBox(self)
        self.speed_box.setToolTip("Playback speed ([ and ])")
        for s in SPEEDS:
            self.speed_box.addItem(f"{s:g}x", s)
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.currentIndexChanged.connect(
            lambda i: state.set_speed(self.speed_box.itemData(i))
        )
        lay.addWidget(self.speed_box)
        # keys belong to the player's shortcuts (Space, arrows, Home/End), not to these widgets
        for w in (self.slider, self.speed_box, *self.findChildren(QToolButton)):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)

        state.sequenceChanged.connect(self._sequence_changed)
        state.frameChanged.connect(self._frame_changed)
        state.playingChanged.connect(self._playing_changed)
        state.speedChanged.connect(self._speed_changed)
        self._sequence_changed(state.sequence)

    def _first(self) -> None:
        self.state.set_frame(0)

    def _last(self) -> None:
        self.state.set_frame(self.state.num_frames - 1)

    def _sequence_changed(self, seq) -> None:
        n = max(self.state.num_frames, 1)
        for w in (self.slider, self.frame_box):
            w.blockSignals(True)
            w.setRange(0, n - 1)
            w.setValue(0)
            w.blockSignals(False)
        self.slider.setPageStep(10)
        self.total_label.setText(f"/ {n - 1}")
        self.setEnabled(seq is not None)

    def _frame_changed(self, t: int) -> None:
        for w in (self.slider, self.frame_box):
            if w.value() != t:
                w.blockSignals(True)
                w.setValue(t)
                w.blockSignals(False)
        seq = self.state.sequence
        fps = float(seq.fps) if seq is not None and seq.fps > 0 else 25.0
        secs = t / fps
        self.time_label.setText(f"{int(secs // 60)}:{secs % 60:05.2f}")

    def _playing_changed(self, playing: bool) -> None:
        icon = (
            QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        )
        self.play_button.setIcon(self.style().standardIcon(icon))

    def _speed_changed(self, speed: float) -> None:
        i = self.speed_box.findData(speed)
        if i >= 0 and i != self.speed_box.currentIndex():
            self.speed_box.blockSignals(True)
            self.speed_box.setCurrentIndex(i)
            self.speed_box.blockSignals(False)
