"""`mcss-studio`: the Studio's entry point (open a folder, the demo, or render a screenshot)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..core.errors import UserInputError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mcss-studio",
        description="Multi-view player with live MCSS 3D pose inference.",
    )
    p.add_argument("path", nargs="?", type=Path, help="project, recording or dataset folder")
    p.add_argument("--demo", action="store_true", help="open the demo (generated on first use)")
    p.add_argument("--sequence", help="sequence of a dataset to show (default: the first)")
    p.add_argument("--checkpoint", type=Path, help="model checkpoint for live inference")
    p.add_argument("--device", default="auto", help="inference device: auto, cpu, cuda")
    p.add_argument(
        "--screenshot",
        type=Path,
        metavar="FILE",
        help="load, run inference, save the window as a PNG and exit",
    )
    p.add_argument("--frame", type=int, help="frame to show (with --screenshot)")
    p.add_argument("--run", type=Path, metavar="DIR",
                   help="training run to inspect (a runs/<id> folder, or a project's newest)")
    p.add_argument(
        "--panel",
        default="window",
        help="what to render: window, player, 3d, transport, labelling, training, inspector, "
             "gallery, map, boxes (editing person boxes, a drag shown), camera:NAME",
    )
    p.add_argument("--mine-now", action="store_true",
                   help="with --screenshot --panel inspector: Mine now on the shown frame (needs "
                        "--checkpoint and a dataset PATH; --run gives the mining rules)")
    p.add_argument("--lasso", action="store_true",
                   help="with --screenshot --panel map: lasso the crops around the shown one")
    p.add_argument("--labelling", action="store_true",
                   help="start in labelling mode (--panel labelling implies it)")
    p.add_argument("--size", default="1400x800", help="window size WxH (default 1400x800)")
    p.add_argument("--no-3d", action="store_true", help="hide the 3D view")
    return p.parse_args(argv)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserInputError("--size", f"expected WxH, got {text!r}") from None
    if not (200 <= w <= 8000 and 200 <= h <= 8000):
        raise UserInputError("--size", f"{text} out of range 200..8000")
    return w, h


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        size = _size(args.size)
        if (args.screenshot is not None and args.path is None and not args.demo
                and args.run is None):
            raise UserInputError("--screenshot", "needs a PATH, --demo or --run")
        if args.frame is not None and args.frame < 0:
            raise UserInputError("--frame", "must be >= 0")
    except UserInputError as exc:
        print(f"mcss-studio: {exc}", file=sys.stderr)
        return 2

    from .qtcompat import BrokenBindingError, check_binding

    try:
        check_binding()
    except BrokenBindingError as exc:
        print(f"mcss-studio: {exc}", file=sys.stderr)
        return 2

    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl+C in the terminal quits
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("MCSS Studio")
    app.setOrganizationName("mcss-studio")
    headless = args.screenshot is not None
    window = MainWindow(
        interactive=not headless, with_3d=not args.no_3d, device=args.device,
        remember_recent=not headless,
    )
    window.resize(*size)
    window.show()
    if args.labelling or args.panel.strip().lower() == "labelling":
        window.set_labelling(True)
    job = None
    if args.screenshot is not None:
        from .screenshot import ScreenshotJob

        job = ScreenshotJob(window, args.screenshot, args.frame, args.panel,
                            mine_now=args.mine_now, lasso=args.lasso)
    inspector_only = args.panel.strip().lower() == "inspector" and not args.mine_now
    run = args.run or (args.path if inspector_only else None)
    if run is not None and not window.open_run(run) and job is not None:
        window.close()
        return 2
    if args.checkpoint is not None:
        window.open_checkpoint(args.checkpoint)
    if args.demo:
        window.open_demo()
    elif args.path is not None:
        window.open_path(args.path, sequence=args.sequence)
    if args.frame is not None and job is None and window.state.sequence is not None:
        window.state.set_frame(args.frame)
    if job is not None:
        if job.exit_code is not None:  # failed while opening
            window.close()
            return job.exit_code
        job.start()
    code = app.exec()
    if window.isVisible():
        window.close()
    return int(job.exit_code if job is not None and job.exit_code is not None else code)


if __name__ == "__main__":
    sys.exit(main())
