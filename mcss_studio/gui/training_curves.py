"""Live training curves of one or more runs (pyqtgraph): losses, learning rate, active
triplets, validation N-MPJPE and retrieval Hit@1 beside its chance level.

It only draws RunHistory objects it is handed (core/runs.py); it reads no files. Each run has
its own colour; inside a plot, the line style says which curve it is. Redrawing is cheap enough
to do a few times a second, however long the run: a curve is drawn with at most 4000 points
(`peak_decimate`), and the plots' ranges are set here, not by pyqtgraph's auto-range: the step
axis ends at a round step count past the last point (at most the runs' planned steps) and a
value axis changes only when the data leave it or shrink to a small part of it. A range that
changes on every point makes pyqtgraph recompute the bounds of every curve and re-lay the axes'
ticks on each redraw (10-30 ms on a busy 2-core machine, which stalls playback); a range that
holds does neither. A user who zooms or pans a plot keeps that view; its 'A' button hands the
range back.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
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
    ("loss", "losses (total; dashed pose; dotted metric)", "", True),
    ("lr", "learning rate", "", False),
    ("active", "active triplets (fraction)", "", False),
    ("n_mpjpe", "validation N-MPJPE", "mm", False),
    ("hit", "retrieval Hit@1 (dashed: chance)", "", False),
)
EVAL_PLOTS = ("n_mpjpe", "hit")
MIN_FILL = 0.4  # a value range is narrowed once the data fill less than this share of it
PAD = 0.1  # the margin above and below the data, as a share of their span
NICE_STEPS = (1, 1.5, 2, 3, 4, 5, 6, 8, 10)  # the step axis ends at one of these x 10^k
STEP_PAD = 0.02  # the step axis's margin at each end, as a share of its end
DRAWN_BUCKETS = 2000  # a step curve is drawn with at most twice this many points


class SparseLogAxis(pg.AxisItem):
    """A log axis that labels only 1, 2 and 5 x 10^k: pyqtgraph labels every minor tick, and
    those of one decade's top (0.7, 0.8, 0.9, 1) overlap on a plot 120 px high."""

    def logTickStrings(self, values, scale, spacing):
        strings = super().logTickStrings(values, scale, spacing)
        return [text if _leading_digit(value) in (1, 2, 5) else ""
                for value, text in zip(values, strings)]


def _leading_digit(log10_value: float) -> int:
    return int(round(10 ** (log10_value - math.floor(log10_value)), 6))


class TrainingCurves(QWidget):
    """Five small plots sharing the step axis; `show_runs` sets what they draw."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.plots: dict[str, pg.PlotWidget] = {}
        for i, (key, title, unit, logy) in enumerate(PLOTS):
            axes = {"left": SparseLogAxis("left")} if logy else None
            plot = pg.PlotWidget(background="w", axisItems=axes)  # per widget: globals stay
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
            plot.getViewBox().disableAutoRange()  # fit_range sets it (see the docstring)
            grid.addWidget(plot, i // 3, i % 3)
            self.plots[key] = plot
        self.plots["loss"].addLegend(offset=(-4, 4))
        self._items: dict[tuple[Path, str], pg.PlotDataItem] = {}
        self._runs: list[tuple[Path, str]] = []
        self._steps_total: dict[Path, int] = {}  # run -> its planned steps
        self._set_ranges: dict[str, tuple] = {}  # plot -> the view range fit_range last set

    def show_runs(self, runs: list[tuple[Path, str]]) -> bool:
        """Draw these runs (folder, label), each in its colour; others are removed. False
        when they are the runs already drawn (nothing changed)."""
        if runs == self._runs:
            return False
        self._runs = list(runs)
        self._steps_total = {}  # update_plot records each shown run's again
        for item_key, item in list(self._items.items()):
            for plot in self.plots.values():
                if item in plot.listDataItems():
                    plot.removeItem(item)
            del self._items[item_key]
        legend = self.plots["loss"].plotItem.legend
        if legend is not None:
            legend.clear()
        return True

    def _item(self, run: Path, label: str, colour: str, curve: str) -> pg.PlotDataItem:
        key = (run, curve)
        item = self._items.get(key)
        if item is None:
            plot_key, style = _placement(curve)
            name = label if curve == "loss" else None
            sparse = plot_key in EVAL_PLOTS  # a point per validation: wide lines cost nothing
            # a step curve has a point per logged step: a pen wider than 1 px is stroked as
            # a polygon, 3-4x the paint time of Qt's 1 px lines on a dense noisy loss curve
            item = self.plots[plot_key].plot([], [], name=name,
                                             pen=pg.mkPen(colour, width=1.5 if sparse else 1,
                                                          style=style),
                                             symbol="o" if sparse and curve != "chance_hit@1"
                                             else None, symbolSize=5, symbolBrush=colour)
            self._items[key] = item
        return item

    def update_plot(self, plot: str, run: Path, history: RunHistory) -> None:
        """Redraw one plot's curves of `run` (one of those shown) from its history. The panel
        updates one plot per tick: one paint event then draws one plot, not five."""
        for index, (shown, label) in enumerate(self._runs):
            if shown != run:
                continue
            colour = RUN_COLOURS[index % len(RUN_COLOURS)]
            self._steps_total[run] = history.steps_total
            for curve in PLOT_CURVES[plot]:
                if curve in ("n_mpjpe", "hit@1", "chance_hit@1"):
                    x, y = history.eval_series(curve)
                else:
                    x, y = history.series(curve)
                if len(x):
                    self._item(run, label, colour, curve).setData(*peak_decimate(x, y))
        self.fit_range(plot)

    def fit_range(self, plot: str) -> None:
        """Set the plot's view to its data, unless the current view still fits them (see the
        module docstring) or the user has zoomed or panned it."""
        box = self.plots[plot].getViewBox()
        if any(box.state["autoRange"]):  # the user pressed 'A': the range is ours again
            box.disableAutoRange()
            self._set_ranges.pop(plot, None)
        elif plot in self._set_ranges and not _same_range(box.viewRange(), self._set_ranges[plot]):
            return  # the user's zoom or pan
        xs, ys = self._plot_data(plot)
        if not len(xs):
            return
        end = self._step_axis_end(float(xs.max()))
        x_range = (-STEP_PAD * end, (1 + STEP_PAD) * end)  # the first and last points show whole
        old = self._set_ranges.get(plot)
        y_range = _value_range(ys.min(), ys.max(), old[1] if old else None)
        if old is not None and (x_range, y_range) == old:
            return
        box.setRange(xRange=x_range, yRange=y_range, padding=0)
        self._set_ranges[plot] = (x_range, y_range)

    def _step_axis_end(self, last_step: float) -> float:
        """A round step count past the last point (NICE_STEPS x 10^k, so the axis changes a
        few times in a run), but never past the longest shown run's planned steps."""
        end = _nice_ceiling(last_step * 1.2)
        planned = max((self._steps_total.get(run, 0) for run, _label in self._runs), default=0)
        return float(min(end, planned) if planned >= last_step else end)

    def _plot_data(self, plot: str) -> tuple[np.ndarray, np.ndarray]:
        """All finite points of the plot's curves (y in log10 on a log plot), x and y."""
        log_y = self.plots[plot].getPlotItem().ctrl.logYCheck.isChecked()
        xs, ys = [], []
        for (_run, curve), item in self._items.items():
            if _placement(curve)[0] != plot or item.xData is None:
                continue
            x, y = np.asarray(item.xData, float), np.asarray(item.yData, float)
            keep = np.isfinite(x) & np.isfinite(y) & ((y > 0) if log_y else True)
            xs.append(x[keep])
            ys.append(np.log10(y[keep]) if log_y else y[keep])
        if not xs:
            return np.empty(0), np.empty(0)
        return np.concatenate(xs), np.concatenate(ys)

    def point_count(self, run: Path, curve: str) -> int:
        """Points drawn for one curve of one run (tests, screenshots)."""
        item = self._items.get((run, curve))
        return 0 if item is None or item.xData is None else len(item.xData)


def peak_decimate(x: np.ndarray, y: np.ndarray,
                  buckets: int = DRAWN_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """At most 2 x `buckets` points drawing the same curve: beyond that, the points are cut into
    `buckets` runs of equal count and each run is drawn as its lowest and highest value, at its
    first step (pyqtgraph's 'peak' downsampling, done once here on arrays instead of by the plot
    on every paint, so a run that logged a million steps redraws as fast as a short one)."""
    if len(x) <= 2 * buckets:
        return x, y
    per = -(-len(x) // buckets)  # ceil
    whole = len(x) // per * per
    runs = y[:whole].reshape(-1, per)
    starts = x[:whole:per]
    lows, highs = runs.min(axis=1), runs.max(axis=1)
    if whole < len(x):  # the last, shorter run
        starts = np.append(starts, x[whole])
        lows, highs = np.append(lows, y[whole:].min()), np.append(highs, y[whole:].max())
    return np.repeat(starts, 2), np.column_stack([lows, highs]).ravel()


def _nice_ceiling(value: float) -> float:
    """The smallest round number (NICE_STEPS x 10^k) that is at least `value` (at least 1)."""
    if value <= 1:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in NICE_STEPS if m * power >= value)


def _value_range(lo: float, hi: float, old: tuple[float, float] | None) -> tuple[float, float]:
    """`old` while the data [lo, hi] lie inside it and fill at least MIN_FILL of it; else the
    data's range with a PAD margin on both sides (a flat curve gets a span of its own)."""
    if old is not None and old[0] <= lo <= hi <= old[1]:
        if hi - lo >= MIN_FILL * (old[1] - old[0]):
            return old
    span = hi - lo if hi > lo else max(abs(hi) * 0.1, 1e-3)
    return (lo - PAD * span, hi + PAD * span)


def _same_range(view: list, wanted: tuple) -> bool:
    return all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
               for got, want in zip(view, wanted) for a, b in zip(got, want))


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
