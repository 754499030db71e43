"""The hint an empty window shows: how to open something, with the shortcut and the buttons.

It lies over its parent (the camera grid), follows the parent's size, and is visible exactly
while the state holds no sequence. It never opens anything itself: its buttons emit signals the
window connects to its own open actions.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from .state import StudioState


def hint_text() -> str:
    """The hint's words, with this platform's spelling of the Open shortcut."""
    open_keys = QKeySequence(QKeySequence.StandardKey.Open).toString(
        QKeySequence.SequenceFormat.NativeText
    )
    return (
        "<p style='font-size:15pt'>Nothing open yet</p>"
        f"<p>Open a project, recording or dataset folder with <b>File &gt; Open folder...</b> "
        f"(<b>{open_keys}</b>),<br>or drag and drop a folder onto this window.</p>"
        "<p>To try the Studio on synthetic data: <b>File &gt; Open demo</b>, "
        "or start it with <code>mcss-studio --demo</code>.</p>"
        "<p>Press <b>F1</b> for every shortcut.</p>"
    )


class EmptyHint(QWidget):
    """A centred hint with "Open folder..." and "Open demo" buttons, shown when nothing is open."""

    openRequested = Signal()
    demoRequested = Signal()

    def __init__(self, state: StudioState, parent: QWidget) -> None:
        super().__init__(parent)
        self.label = QLabel(hint_text(), self)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        open_button = QPushButton("Open folder...", self)
        open_button.clicked.connect(self.openRequested)
        demo_button = QPushButton("Open demo", self)
        demo_button.clicked.connect(self.demoRequested)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(open_button)
        buttons.addWidget(demo_button)
        buttons.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addStretch(1)
        lay.addWidget(self.label)
        lay.addLayout(buttons)
        lay.addStretch(1)
        parent.installEventFilter(self)
        self.setGeometry(parent.rect())
        state.sequenceChanged.connect(lambda seq: self.setVisible(seq is None))
        self.setVisible(state.sequence is None)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if watched is self.parent() and event.type() == QEvent.Type.Resize:
            self.setGeometry(self.parent().rect())
        return False
