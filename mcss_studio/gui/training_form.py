"""The training panel's form: what to train on and how, as `mcss-train fit` settings.

It turns widgets into a dict of TrainConfig field names (the Studio never imports trainer/;
the trainer validates the file and a bad value comes back as a failed run with its one-line
message). A preset fills the widgets and also carries the settings the form does not show (the
bench's label_every, rotation_weight, ...); the last used preset and values are remembered in
the user's settings (gui/recent.py `user_settings`, private in tests).

Labelled subset: the ground truth of chosen subjects (a limited-label study), or the project's
label store (labels.sqlite), selectable while the project has one: the form shows its usable
frames (all 17 joints in 3D, what the trainer reads) and revision as last read off the UI thread
(`set_store`), and the run's config gets `labels = PROJECT/labels.sqlite` (`mcss-train fit
--labels`, kept for resumes and the torchrun line). `labels()` returns the source as a dict for
the run's launch record ({"source": "ground_truth", "subjects", "every"} or {"source": "store",
"path", "revision", "frames"}), so the run history shows which labels a run trained on.
"""

from __future__ import annotations

import json

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSpinBox,
    QWidget,
)

from ..core.labels import StoreSummary
from ..core.sources.base import Dataset
from ..core.train_presets import MODEL_SIZES, studio_presets
from .recent import user_settings

SETTINGS_KEY = "training/last"
CROP_SIZES = (32, 48, 64, 96, 128, 160, 192, 256)
DEVICES = ("auto", "cpu", "cuda")
MINING = ("hardest", "semihard", "random")
LABEL_SOURCES = ("ground truth of the chosen subjects", "label store (labels.sqlite)")
GROUND_TRUTH, STORE = 0, 1  # indices into LABEL_SOURCES
NO_STORE_TIP = ("The project has no label store yet: label frames in the Labelling panel, or "
                "mcss-data labels PROJECT import-gt.")
DEFAULTS = dict(  # the trainer's defaults (trainer/config.py) for settings a preset leaves out
    lambda_metric=0.1, tau=10, tau_max=0, margin=0.2, mining="hardest", steps=5000, lr=1e-3,
    labelled_batch=32, sequences_per_batch=4, instants_per_sequence=8, views_per_instant=2,
    crop_size=128, device="auto", eval_every=0, eval_stride=5, checkpoint_every=500,
    label_every=1, log_every=10,
)


def _spin(lo: int, hi: int, step: int = 1, special: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    if special:
        box.setSpecialValueText(special)
    return box


def _double(lo: float, hi: float, step: float, decimals: int) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    return box


class SubjectList(QListWidget):
    """Checkable subjects of the dataset, each with its number of sequences."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMaximumHeight(88)

    def set_subjects(self, dataset: Dataset | None, checked: list[str]) -> None:
        self.clear()
        if dataset is None:
            return
        for subject in dataset.subjects:
            n = len(dataset.for_subjects([subject]))
            item = QListWidgetItem(f"{subject}  ({n} sequence{'s' if n != 1 else ''})")
            item.setData(Qt.ItemDataRole.UserRole, subject)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if subject in checked
                               else Qt.CheckState.Unchecked)
            self.addItem(item)

    def checked(self) -> list[str]:
        return [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())
                if self.item(i).checkState() == Qt.CheckState.Checked]

    def set_checked(self, subjects: list[str]) -> None:
        for i in range(self.count()):
            item = self.item(i)
            on = item.data(Qt.ItemDataRole.UserRole) in subjects
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)


class TrainingForm(QWidget):
    """Preset, data, labels, model and method settings; `settings()` is the run's config."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.presets = studio_presets()
        self.dataset: Dataset | None = None
        self.store: StoreSummary | None = None  # the project's label store, as last read
        self._store_wanted = False  # the remembered source, until a store is there
        self._base: dict = {}  # the preset's settings, widgets override them
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.preset = QComboBox()
        self.preset.addItems(list(self.presets))
        self.preset.activated.connect(lambda _i: self.apply_preset(self.preset.currentText()))
        form.addRow("Preset", self.preset)
        self.train_subjects = SubjectList()
        form.addRow("Unlabelled video", self.train_subjects)
        self.label_source = QComboBox()
        self.label_source.addItems(LABEL_SOURCES)
        self.label_source.model().item(STORE).setEnabled(False)  # until a store is read
        self.label_source.setToolTip(NO_STORE_TIP)
        self.label_source.activated.connect(lambda i: self.choose_store(i == STORE))
        form.addRow("Labels", self.label_source)
        self.labelled_subjects = SubjectList()
        form.addRow("Labelled subjects", self.labelled_subjects)
        self.label_every = _spin(1, 1000)
        self.label_every.setToolTip("keep every n-th labelled frame (fewer labels)")
        form.addRow("Label every n-th", self.label_every)
        self.label_count = QLabel("")
        form.addRow("", self.label_count)
        self.test_subjects = SubjectList()
        form.addRow("Validation subjects", self.test_subjects)
        self.eval_stride = _spin(1, 1000)
        self.eval_stride.setToolTip("validation uses every n-th frame of the validation "
                                    "subjects")
        form.addRow("Validation frame step", self.eval_stride)
        self.eval_every = _spin(0, 1_000_000, 50, "at the end")
        self.eval_every.setSuffix(" steps")
        form.addRow("Validate every", self.eval_every)
        self.model_size = QComboBox()
        self.model_size.addItems(list(MODEL_SIZES))
        form.addRow("Model size", self.model_size)
        self.crop_size = QComboBox()
        self.crop_size.addItems([str(s) for s in CROP_SIZES])
        form.addRow("Crop size (px)", self.crop_size)
        self.lambda_metric = _double(0.0, 10.0, 0.05, 3)
        self.lambda_metric.setToolTip("weight of the multi-view metric loss; 0 = the baseline "
                                      "on labels only")
        form.addRow("Lambda (metric loss)", self.lambda_metric)
        window = QWidget()
        row = QHBoxLayout(window)
        row.setContentsMargins(0, 0, 0, 0)
        self.tau = _spin(1, 100000)
        self.tau_max = _spin(0, 100000, 1, "none")
        row.addWidget(QLabel("tau"))
        row.addWidget(self.tau)
        row.addWidget(QLabel("to"))
        row.addWidget(self.tau_max)
        form.addRow("Negatives (frames apart)", window)
        self.margin = _double(0.0, 10.0, 0.05, 3)
        form.addRow("Triplet margin", self.margin)
        self.mining = QComboBox()
        self.mining.addItems(MINING)
        form.addRow("Mining", self.mining)
        self.steps = _spin(1, 10_000_000, 100)
        form.addRow("Steps", self.steps)
        self.lr = _double(1e-6, 1.0, 1e-4, 6)
        form.addRow("Learning rate", self.lr)
        self.labelled_batch = _spin(1, 4096)
        form.addRow("Labelled batch", self.labelled_batch)
        batch = QWidget()
        row = QHBoxLayout(batch)
        row.setContentsMargins(0, 0, 0, 0)
        self.sequences_per_batch = _spin(1, 256)
        self.instants_per_sequence = _spin(1, 256)
        self.views_per_instant = _spin(1, 64)
        self.sequences_per_batch.setToolTip("sequences")
        self.instants_per_sequence.setToolTip("instants per sequence")
        self.views_per_instant.setToolTip("views per instant")
        for i, box in enumerate((self.sequences_per_batch, self.instants_per_sequence,
                                 self.views_per_instant)):
            if i:
                row.addWidget(QLabel("x"))
            row.addWidget(box)
        batch.setToolTip("sequences x instants per sequence x views per instant")
        form.addRow("Multi-view batch", batch)
        self.checkpoint_every = _spin(0, 1_000_000, 50, "only at the end")
        self.checkpoint_every.setSuffix(" steps")
        form.addRow("Checkpoint every", self.checkpoint_every)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        form.addRow("Device", self.device)
        self.remember = QCheckBox("remember these values")
        self.remember.setChecked(True)
        form.addRow("", self.remember)
        for box in self.findChildren(QSpinBox) + self.findChildren(QDoubleSpinBox):
            box.valueChanged.connect(self.changed)
        for box in self.findChildren(QComboBox):
            box.currentIndexChanged.connect(self.changed)
        for lst in (self.train_subjects, self.labelled_subjects, self.test_subjects):
            lst.itemChanged.connect(self.changed)
        self.changed.connect(self._show_label_count)
        self.load_last()

    # -- the label store ------------------------------------------------------------------------
    def set_store(self, store: StoreSummary | None) -> None:
        """The project's label store as just read (None: the project has none); the store source
        is selectable only with one, and chosen again when it was the remembered choice."""
        self.store = store
        item = self.label_source.model().item(STORE)
        item.setEnabled(store is not None)
        self.label_source.setToolTip(
            "the project's labels.sqlite: its frames with all 17 joints in 3D are the labels"
            if store is not None else NO_STORE_TIP)
        if store is None and self.store_selected:
            self.label_source.setCurrentIndex(GROUND_TRUTH)
        elif store is not None and self._store_wanted and not self.store_selected:
            self.label_source.setCurrentIndex(STORE)
        self._show_label_count()
        self.changed.emit()

    def choose_store(self, store: bool) -> None:
        """The user's choice of label source (the store only while there is one)."""
        self._store_wanted = store
        can = store and self.label_source.model().item(STORE).isEnabled()
        self.label_source.setCurrentIndex(STORE if can else GROUND_TRUTH)

    @property
    def store_selected(self) -> bool:
        return self.label_source.currentIndex() == STORE

    # -- data ---------------------------------------------------------------------------------
    def set_dataset(self, dataset: Dataset | None) -> None:
        """List the subjects of the open dataset, checked as its splits say (or as the last
        run of this form chose, where those subjects exist)."""
        self.dataset = dataset
        splits = dataset.splits if dataset is not None else {}
        subjects = dataset.subjects if dataset is not None else []
        last = self._remembered().get("values", {})

        def choice(key: str, split: str) -> list[str]:
            chosen = [s for s in last.get(key, []) if s in subjects]
            return chosen or list(splits.get(split, subjects if split == "train" else []))

        self.train_subjects.set_subjects(dataset, choice("train_subjects", "train"))
        self.labelled_subjects.set_subjects(dataset, choice("labelled_subjects", "labelled"))
        self.test_subjects.set_subjects(dataset, choice("test_subjects", "test"))
        self._show_label_count()

    def _show_label_count(self) -> None:
        """How many labelled frames the chosen source gives, as the trainer will count them:
        the store's usable frames, or the chosen subjects' sequences, every n-th frame."""
        store = self.store_selected
        self.labelled_subjects.setEnabled(not store)  # the store's frames say whose they are
        self.label_every.setEnabled(not store)
        if store:
            s = self.store
            self.label_count.setText(
                "reading the label store..." if s is None else
                f"label store revision {s.revision}: {s.usable} usable frame"
                f"{'s' if s.usable != 1 else ''} (all 17 joints in 3D)"
                + (f", {s.frames - s.usable} incomplete left out" if s.frames > s.usable else ""))
            return
        if self.dataset is None:
            self.label_count.setText("")
            return
        entries = self.dataset.for_subjects(self.labelled_subjects.checked())
        every = self.label_every.value()
        frames = "every frame" if every == 1 else f"one frame in {every}"
        self.label_count.setText(f"ground truth of {len(entries)} sequence(s), {frames}")

    # -- presets and memory -------------------------------------------------------------------
    def apply_preset(self, name: str) -> None:
        self.preset.setCurrentText(name)
        self._base = dict(self.presets.get(name, {}))
        self.show_values({**DEFAULTS, **self._base})

    def show_values(self, v: dict) -> None:
        """Show these settings (TrainConfig names); widgets of settings not named keep what
        they show."""
        model_keys = set().union(*MODEL_SIZES.values())
        if model_keys & set(v):
            current = MODEL_SIZES[self.model_size.currentText()]
            wanted = {k: v.get(k, current[k]) for k in model_keys}
            size = next((k for k, m in MODEL_SIZES.items()
                         if all(wanted[f] == m[f] for f in m)), None)
            self.model_size.setCurrentText(size or next(
                k for k in MODEL_SIZES if k.startswith("standard")))
        if "crop_size" in v:
            self.crop_size.setCurrentText(str(v["crop_size"]))
        for name in ("tau", "tau_max", "steps", "labelled_batch", "sequences_per_batch",
                     "instants_per_sequence", "views_per_instant", "eval_every", "eval_stride",
                     "checkpoint_every", "label_every"):
            if name in v:
                getattr(self, name).setValue(int(v[name]))
        for name in ("lambda_metric", "margin", "lr"):
            if name in v:
                getattr(self, name).setValue(float(v[name]))
        for name in ("mining", "device"):
            if name in v:
                getattr(self, name).setCurrentText(str(v[name]))
        for key, lst in (("train_subjects", self.train_subjects),
                         ("labelled_subjects", self.labelled_subjects),
                         ("test_subjects", self.test_subjects)):
            if v.get(key):
                lst.set_checked(list(v[key]))

    def _remembered(self) -> dict:
        try:
            doc = json.loads(str(user_settings().value(SETTINGS_KEY, "") or "{}"))
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def load_last(self) -> None:
        """The last used preset and values, or the first preset."""
        doc = self._remembered()
        values = doc.get("values") if isinstance(doc.get("values"), dict) else {}
        self._store_wanted = values.get("label_source") == "store"
        name = doc.get("preset") if doc.get("preset") in self.presets else next(iter(self.presets))
        self.apply_preset(name)
        if isinstance(doc.get("values"), dict):
            self.show_values({**DEFAULTS, **self._base, **doc["values"]})

    def remember_values(self) -> None:
        if self.remember.isChecked():
            doc = {"preset": self.preset.currentText(), "values": self._widget_values()}
            user_settings().setValue(SETTINGS_KEY, json.dumps(doc))

    # -- the config ---------------------------------------------------------------------------
    def _widget_values(self) -> dict:
        v: dict = dict(MODEL_SIZES[self.model_size.currentText()])
        v["crop_size"] = int(self.crop_size.currentText())
        for name in ("tau", "tau_max", "steps", "labelled_batch", "sequences_per_batch",
                     "instants_per_sequence", "views_per_instant", "eval_every", "eval_stride",
                     "checkpoint_every", "label_every"):
            v[name] = getattr(self, name).value()
        for name in ("lambda_metric", "margin", "lr"):
            v[name] = getattr(self, name).value()
        v["mining"] = self.mining.currentText()
        v["device"] = self.device.currentText()
        v["train_subjects"] = self.train_subjects.checked()
        v["labelled_subjects"] = self.labelled_subjects.checked()
        v["test_subjects"] = self.test_subjects.checked()
        v["label_source"] = "store" if self.store_selected else "ground_truth"
        return v

    def settings(self) -> dict:
        """The run's settings (TrainConfig names) without data and folders, which the Session
        adds: the preset's, overridden by every value shown."""
        v = {**self._base, **self._widget_values()}
        del v["label_source"]
        if self.store_selected and self.store is not None:
            v["labels"] = str(self.store.path.resolve())
            for key in ("labelled_subjects", "label_every"):  # the trainer ignores them then
                v.pop(key, None)
        v["log_every"] = max(1, min(int(v.get("log_every", 10)), v["steps"] // 100 or 1))
        if self.dataset is not None:
            v["data"] = str(self.dataset.root)
        return v

    def labels(self) -> dict:
        """The label source of a run, for its launch record."""
        if self.store_selected and self.store is not None:
            s = self.store
            return {"source": "store", "path": str(s.path.resolve()), "revision": s.revision,
                    "frames": s.usable}
        return {"source": "ground_truth", "subjects": self.labelled_subjects.checked(),
                "every": self.label_every.value()}

    def run_name(self) -> str:
        return self.preset.currentText().split("(")[0].strip()
