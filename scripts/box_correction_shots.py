"""Correct one person box in the Studio the way a user drags it, for the README's screenshots.

Usage (headless: under xvfb-run):
    python scripts/box_correction_shots.py REC OUT_DIR --camera NAME --frame N
        --box X0 Y0 X1 Y1 [--spread N] [--other-views] [--size WxH]

Opens the recording folder REC in the Studio window (its crop cache built first, as the player
does), turns on View > Edit person boxes and, with the mouse events a user's hand sends, draws
the box X0 Y0 X1 Y1 (native pixels) in camera NAME at frame N: pressed at one corner (outside
the box shown, so a new box is drawn) and dragged to the other; when that corner is inside the
shown box, its top-left and then its bottom-right corner are dragged there instead. Saves
OUT_DIR/boxes_dragging.png halfway through the (last) drag and OUT_DIR/boxes_corrected.png
after it, the corrected boxes spread over +-spread frames and, with --other-views, moved in
the other (calibrated) views. Writes REC/boxes.npz, as the Studio does: run it on a copy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from mcss_studio.gui.main_window import MainWindow
from mcss_studio.gui.screenshot import render_panel, wait_until


def mouse(view, kind: QEvent.Type, xy, buttons) -> None:
    """A mouse event at native pixel xy, delivered to the view like a real one."""
    pos = view.native_to_widget().map(QPointF(float(xy[0]), float(xy[1])))
    button = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else Qt.MouseButton.LeftButton
    QApplication.sendEvent(view, QMouseEvent(kind, pos, view.mapToGlobal(pos), button, buttons,
                                             Qt.KeyboardModifier.NoModifier))


def drag(view, start, end, halfway_shot: Path | None = None, window=None) -> None:
    """Press at start, move in 8 steps to end, release; a screenshot at step 5 if asked."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    mouse(view, QEvent.Type.MouseButtonPress, start, Qt.MouseButton.LeftButton)
    for k in range(1, 9):
        mouse(view, QEvent.Type.MouseMove, start + (end - start) * k / 8,
              Qt.MouseButton.LeftButton)
        if k == 5 and halfway_shot is not None:
            render_panel(window, "window").save(str(halfway_shot))
    mouse(view, QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)
    QApplication.processEvents()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recording", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--camera", required=True)
    p.add_argument("--frame", type=int, required=True)
    p.add_argument("--box", type=float, nargs=4, required=True)
    p.add_argument("--spread", type=int, default=10)
    p.add_argument("--other-views", action="store_true")
    p.add_argument("--size", default="1600x900")
    args = p.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow(interactive=False, remember_recent=False)
    window.resize(*(int(v) for v in args.size.split("x")))
    window.show()
    if not window.open_path(args.recording):
        raise SystemExit(window.state.last_error)
    state, session = window.state, window.session

    def settled() -> bool:  # the checkpoint loaded, its crops cut with the boxes shown
        return (state.checkpoint_requested is None and not session.cache_busy
                and state.media.crops_current(*session.crop_contract))

    wait_until(app, settled)
    cams = [v.name for v in window.grid.views]
    view = window.grid.views[cams.index(args.camera)]
    state.set_frame(args.frame)
    state.set_box_spread(args.spread)
    state.set_box_other_views(args.other_views)
    state.set_box_editing(True)
    state.select_camera(view.index)
    wait_until(app, lambda: window.grid.full_res_frame == args.frame)
    args.out.mkdir(parents=True, exist_ok=True)
    x0, y0, x1, y1 = args.box
    if view.box_rect() is None or not view.box_rect().contains(
            view.native_to_widget().map(QPointF(x0, y0))):
        drag(view, (x0, y0), (x1, y1), args.out / "boxes_dragging.png", window)
    else:  # the corner is inside the shown box: move its corners there
        drag(view, view.box[:2], (x0, y0))
        drag(view, view.box[2:], (x1, y1), args.out / "boxes_dragging.png", window)
    if state.last_error:
        raise SystemExit(state.last_error)
    wait_until(app, lambda: window.grid.full_res_frame == args.frame)
    render_panel(window, "window").save(str(args.out / "boxes_corrected.png"))
    for v in window.grid.views:
        print(f"{v.name} frame {args.frame}: box {np.round(v.box, 1).tolist()}"
              f"{' (corrected)' if state.box_keyed(v.index, args.frame) else ''}")
    print(f"undo stack: {session.undo_stack.count()} command(s); box file "
          f"{state.box_track.path}")
    wait_until(app, settled)  # the crop cache re-cut with the corrected boxes
    cache = state.media.crop_cache
    print(f"crop cache: {cache.meta['box_method']} boxes, complete {cache.meta['complete']}")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
