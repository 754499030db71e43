"""Training on the label store from the Studio: the form offers the project's labels.sqlite
with its usable frames and revision, a run started from it records the revision it read (start
event, launch record, history table), and the panel flags a run whose labels changed since,
live, as the user labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcss_studio.core import open_dataset
from mcss_studio.core.label_io import labels_from_ground_truth
from mcss_studio.core.labels import LabelStore, StoreSummary
from mcss_studio.core.project import create_project
from mcss_studio.core.runlog import read_events
from mcss_studio.core.runs import read_launch, read_run_config
from mcss_studio.gui.training_panel import CHANGED_SINCE, COLUMNS
from tests.test_training_panel import TINY, WAIT_MS

pytestmark = [pytest.mark.usefixtures("private_studio_dirs")]
LABELLED_FRAMES = (0, 4, 8)  # of S1's sequence, complete; one more frame lacks a joint


def fill_store(root: Path, data: Path) -> int:
    """Three complete 3D labels and one with a joint missing; the store's revision."""
    dataset = open_dataset(data)
    first = dataset.for_subjects(["S1"])[0].name
    labels = labels_from_ground_truth(dataset, ["S1"], sequences=[first],
                                      frames=list(LABELLED_FRAMES) + [2])
    labels[-1].joints3d[5] = np.nan
    with LabelStore.open(root) as store:
        return store.put_many(labels)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from mcss_studio.core.synth import generate

    root = tmp_path_factory.mktemp("store-project")
    data = generate(root / "data", preset="tiny", seed=0)
    create_project(root, data)
    fill_store(root, data)
    return root


def test_store_summary_counts_frames_with_every_joint_in_3d(project):
    with LabelStore.open(project, read_only=True) as store:
        summary = store.training_summary()
        assert summary == StoreSummary(project / "labels.sqlite", store.revision, 4, 3)


def test_form_offers_the_store_only_while_the_project_has_one(qtbot, project):
    from mcss_studio.gui.training_form import TrainingForm

    form = TrainingForm()
    qtbot.addWidget(form)
    form.set_dataset(open_dataset(project / "data"))
    form.choose_store(True)
    assert not form.store_selected  # no store read yet: ground truth stays
    summary = StoreSummary(project / "labels.sqlite", 7, 4, 3)
    form.set_store(summary)
    assert form.store_selected  # the user's choice comes back with the store
    assert form.label_count.text() == ("label store revision 7: 3 usable frames (all 17 joints "
                                       "in 3D), 1 incomplete left out")
    assert not form.labelled_subjects.isEnabled() and not form.label_every.isEnabled()
    v = form.settings()
    assert v["labels"] == str((project / "labels.sqlite").resolve())
    assert "labelled_subjects" not in v and "label_every" not in v
    assert form.labels() == {"source": "store", "path": v["labels"], "revision": 7, "frames": 3}
    form.remember_values()
    again = TrainingForm()  # a new session: the store is chosen again once it is read
    qtbot.addWidget(again)
    again.set_store(summary)
    assert again.store_selected
    form.set_store(None)  # the project closed
    assert not form.store_selected and "labels" not in form.settings()
    assert form.labels()["source"] == "ground_truth" and form.labelled_subjects.isEnabled()


def edit_a_label(window) -> None:
    """Move one joint of a stored frame, as a click in the labelling panel does."""
    from mcss_studio.gui.commands import LabelEditCommand

    store = window.state.label_store
    before = store.get(*store.keys()[0])
    after = before.copy()
    after.points2d[0, 3] += 2.0
    window.session.execute(LabelEditCommand("move a joint", window.state, store, before, after))


def labels_cell(panel, run: Path) -> str:
    row = [r for r in range(panel.table.rowCount())
           if panel.table.item(r, 0).text() == run.name][0]
    return panel.table.item(row, COLUMNS.index("labels")).text()


@pytest.mark.gui
@pytest.mark.slow
def test_a_run_on_the_store_is_tied_to_its_revision_and_flagged_after_edits(qtbot, project):
    from mcss_studio.gui.main_window import MainWindow

    window = MainWindow(interactive=False, with_3d=False)
    qtbot.addWidget(window)
    window.show()
    assert window.open_path(project), window.state.last_error
    qtbot.waitUntil(lambda: not window.session.cache_busy, timeout=WAIT_MS)
    window.training_dock.show()
    panel, state = window.training_panel, window.state
    revision = state.label_store.revision
    qtbot.waitUntil(lambda: panel.form.store is not None, timeout=WAIT_MS)
    assert (panel.form.store.revision, panel.form.store.usable) == (revision, 3)
    panel.form.choose_store(True)
    panel.form.show_values(dict(TINY, steps=3, checkpoint_every=0, log_every=1,
                                train_subjects=["S1"], test_subjects=["S9"]))
    assert panel.form.store_selected and panel.start_button.isEnabled(), panel.reason.text()
    panel.start_button.click()
    run = state.training_run
    qtbot.waitUntil(lambda: state.training_run is None, timeout=WAIT_MS)
    start = read_events(run / "events.jsonl")[0]
    assert start["label_store"]["revision"] == revision, start
    assert start["labelled_frames"] == 3 and start["label_store"]["incomplete"] == 1
    assert read_events(run / "events.jsonl")[-1]["status"] == "done"
    store_file = str((project / "labels.sqlite").resolve())
    assert read_run_config(run)["labels"] == store_file
    assert read_launch(run).labels == {"source": "store", "path": store_file,
                                       "revision": revision, "frames": 3}
    qtbot.waitUntil(lambda: labels_cell(panel, run) == f"label store rev {revision}",
                    timeout=WAIT_MS)
    assert panel.labels_note.text() == (f"{run.name} trained on the current labels (label "
                                        f"store revision {revision}).")
    # the user labels: the run is flagged as trained on older labels, without a refresh
    edit_a_label(window)
    qtbot.waitUntil(lambda: panel.form.store.revision == revision + 1, timeout=WAIT_MS)
    assert labels_cell(panel, run) == f"label store rev {revision}{CHANGED_SINCE}"
    assert "the labels have changed since (now revision " \
        f"{revision + 1}, 1 edit later)" in panel.labels_note.text()
    window.session.undo_stack.undo()  # undo is an edit too: the labels are not the run's
    qtbot.waitUntil(lambda: panel.form.store.revision == revision + 2, timeout=WAIT_MS)
    assert "2 edits later" in panel.labels_note.text()
    window.session.close_labels()  # the project's store closes: not comparable, let go of
    assert not panel.form.store_selected and not panel.form.label_source.model().item(
        1).isEnabled()
    assert panel.labels_note.text() == (f"{run.name} trained on label store revision "
                                        f"{revision} ({store_file}).")
    qtbot.waitUntil(lambda: panel.store_reader._store is None, timeout=WAIT_MS)
    window.close()
