"""Dialogs: user errors (never tracebacks), the shortcuts help, long-task progress."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QMessageBox,
    QProgressDialog,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Space", "Play / pause"),
    ("Left / Right", "Previous / next frame"),
    ("Shift+Left / Shift+Right", "Back / forward 10 frames"),
    ("Home / End", "First / last frame"),
    ("Ctrl+G", "Jump to frame"),
    ("[ / ]", "Slower / faster playback"),
    ("Mouse wheel on a view", "Zoom that view at the cursor"),
    ("Drag in a zoomed view", "Pan that view"),
    ("Middle click on a view", "Reset that view's zoom"),
    ("Double click on a view", "Maximise the view / back to the grid"),
    ("Escape", "Back to the grid"),
    ("R", "Reset all views and the 3D camera"),
    ("F", "3D view: frame the whole rig / the person alone"),
    ("B / S / G / N", "Toggle box / skeleton / ground truth / joint names"),
    ("3D view: drag / Shift+drag / wheel", "Orbit / pan / zoom"),
    ("Ctrl+O", "Open a project, recording or dataset folder"),
    ("Ctrl+K", "Open a checkpoint"),
    ("Ctrl+Z / Ctrl+Shift+Z", "Undo / redo the last edit"),
    ("E", "Edit person boxes on / off"),
    ("Boxes: drag an edge / corner / inside", "Correct the box (spread over the set frames)"),
    ("Boxes: drag outside the box", "Draw a new box"),
    ("Boxes: Del / right drag", "Remove the selected view's box / pan a zoomed view"),
    ("Ctrl+L", "Labelling mode on / off"),
    ("Labelling: click / drag", "Place the current joint / move a placed one"),
    ("Labelling: right drag", "Pan a zoomed view"),
    ("Labelling: . / ,", "Next / previous joint"),
    ("Labelling: PgDown / PgUp", "Next / previous labelled frame"),
    ("Labelling: O / Del / Shift+Del", "Occluded here / clear here / clear the joint"),
    ("Labelling: P / D / A / T", "From prediction / from the 2D detector / accept all / "
     "triangulate the frame"),
    ("F1 or ?", "This help"),
    ("Ctrl+Q", "Quit"),
)


def show_error(parent: QWidget | None, message: str, title: str = "Cannot do that") -> QMessageBox:
    """A non-blocking warning box with the one-line message; the window stays usable."""
    box = QMessageBox(
        QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent
    )
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.open()
    return box


class ShortcutsDialog(QDialog):
    """Every keyboard and mouse shortcut of the player, in one table."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard and mouse shortcuts")
        lay = QVBoxLayout(self)
        table = QTableWidget(len(SHORTCUTS), 2, self)
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, (keys, action) in enumerate(SHORTCUTS):
            table.setItem(row, 0, QTableWidgetItem(keys))
            table.setItem(row, 1, QTableWidgetItem(action))
        table.setWordWrap(False)
        table.resizeColumnsToContents()
        table.resizeRowsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        lay.addWidget(table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=self)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.table = table
        self._fit_to_content()

    def _fit_to_content(self) -> None:
        """Every row and every cell's full text in view without scrolling, when the screen is
        large enough (else as large as the screen allows, with scroll bars)."""
        table = self.table
        frame = 2 * table.frameWidth()
        width = frame + sum(table.columnWidth(c) for c in range(table.columnCount()))
        height = frame + table.horizontalHeader().sizeHint().height() + sum(
            table.rowHeight(r) for r in range(table.rowCount())
        )
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        if screen is not None:
            width = min(width, screen.width() - 80)
            height = min(height, screen.height() - 160)
        table.setMinimumSize(width + 4, height + 4)
        self.adjustSize()


def progress_dialog(parent: QWidget | None, title: str, text: str) -> QProgressDialog:
    """A modal progress dialog for work done in a TaskWorker (cancel stops the worker)."""
    dlg = QProgressDialog(text, "Cancel", 0, 0, parent)
    dlg.setWindowTitle(title)
    dlg.setWindowModality(Qt.WindowModality.WindowModal)
    dlg.setMinimumDuration(0)
    dlg.setAutoClose(False)
    dlg.setAutoReset(False)
    return dlg
