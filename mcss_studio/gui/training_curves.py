"""Live training curves of one or more runs (pyqtgraph): losses, learning rate, active
triplets, validation N-MPJPE and retrieval Hit@1 beside its chance level.

It only draws RunHistory objects it is handed (core/runs.py); it reads no files. Each run has
its own colour; inside a plot, the line style says which curve it is. Redrawing is cheap enough
to do a few times a second: the plots downsample and clip to the view.
"""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QWidget

from ..core.runs import RunHistory

RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
LOSS_STYLES = {"loss": Qt.PenStyle.SolidLine, "pose_loss": Qt.PenStyle.DashLine,
               "metric_loss": Qt.PenStyle.DotLine}
PLOT_CURVES = {"loss": ("loss", "pose_loss", "metric_loss"), "lr": ("lr",),
               "active": ("active_triplets",), "n_mpjpe": ("n_mpjpe",),
               "hit": ("hit@1", "chance_hit@1")}
PLOTS = (  # name, title, y label, log y
    ("loss", "losses (solid total, dashed pose, dotted metric)", "", True),
    ("lr", "learning rate", "", False),
    ("active", "active triplets (fraction)", "", False),
    ("n_mpjpe", "validation N-MPJPE", "mm", False),
    ("hit", "retrieval Hit@1 (dashed: chance)", "", False),
)


class TrainingCurves(QWidget):
    """Five small plots sharing the step axis; `show_runs` sets what they draw."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.plots: dict[str, pg.PlotWidget] = {}
        for i, (key, title, unit, logy) in enumerate(PLOTS):
            plot = pg.PlotWidget(background="w")  # per widget: pyqtgraph's globals stay
            plot.setTitle(title, color="k", size="9pt")
            for side in ("left", "bottom"):
                plot.getAxis(side).setPen("k")
                plot.getAxis(side).setTextPen("k")
                plot.getAxis(side).enableAutoSIPrefix(False)  # no relayout as ranges change
            plot.setLabel("bottom", "step")
            if unit:
                plot.setLabel("left", unit)
            plot.setLogMode(y=logy)
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setClipToView(True)
            plot.setDownsampling(auto=True, mode="peak")
            plot.setMinimumHeight(120)
            grid.addWidget(plot, i // 3, i % 3)
            self.plots[key] = plot
        self.plots["loss"].addLegend(offset=(-4, 4))
        self._items: dict[tuple[Path, str], pg.PlotDataItem] = {}
        self._runs: list[tuple[Path, str]] = []

    def show_runs(self, runs: list[tuple[Path, str]]) -> None:
        """Draw these runs (folder, label), each in its colour; others are removed."""
        if runs == self._runs:
            return
        self._runs = list(runs)
        for item_key, item in list(self._items.items()):
            for plot in self.plots.values():
                if item in plot.listDataItems():
                    plot.removeItem(item)
            del self._items[item_key]
        legend = self.plots["loss"].plotItem.legend
        if legend is not None:
            legend.clear()

    def _item(self, run: Path, label: str, colour: str, curve: str) -> pg.PlotDataItem:
        key = (run, curve)
        item = self._items.get(key)
        if item is None:
            plot_key, style = _placement(curve)
            name = label if curve == "loss" else None
            item = self.plots[plot_key].plot([], [], name=name,
                                             pen=pg.mkPen(colour, width=1.5, style=style),
                                             symbol="o" if plot_key in ("n_mpjpe", "hit") and
                                             curve != "chance_hit@1" else None,
                                             symbolSize=5, symbolBrush=colour)
            self._items[key] = item
        return item

    def update_plot(self, plot: str, run: Path, history: RunHistory) -> None:
        """Redraw one plot's curves of `run` (one of those shown) from its history. The panel
        updates one plot per tick: one paint event then draws one plot, not five."""
        for index, (shown, label) in enumerate(self._runs):
            if shown != run:
                continue
            colour = RUN_COLOURS[index % len(RUN_COLOURS)]
            for curve in PLOT_CURVES[plot]:
                if curve in ("n_mpjpe", "hit@1", "chance_hit@1"):
                    x, y = history.eval_series(curve)
                else:
                    x, y = history.series(curve)
                if len(x):
                    self._item(run, label, colour, curve).setData(x, y)

    def point_count(self, run: Path, curve: str) -> int:
        """Points drawn for one curve of one run (tests, screenshots)."""
        item = self._items.get((run, curve))
        return 0 if item is None or item.xData is None else len(item.xData)


def _placement(curve: str) -> tuple[str, Qt.PenStyle]:
    if curve in LOSS_STYLES:
        return "loss", LOSS_STYLES[curve]
    if curve == "active_triplets":
        return "active", Qt.PenStyle.SolidLine
    if curve == "chance_hit@1":
        return "hit", Qt.PenStyle.DashLine
    if curve == "hit@1":
        return "hit", Qt.PenStyle.SolidLine
    return curve, Qt.PenStyle.SolidLine
