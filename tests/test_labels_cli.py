"""`mcss-data labels` (import-gt, import, export, info) and `mcss-train fit --labels`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mcss_studio.cli.data import main as data_main
from mcss_studio.core import open_dataset
from mcss_studio.core.label_io import export_labels, import_labels, labels_from_ground_truth
from mcss_studio.core.labels import SOURCES, VISIBLE, LabelStore
from mcss_studio.core.runlog import read_events
from trainer.cli import main as train_main

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from mcss_studio.core.synth import generate

    return generate(tmp_path_factory.mktemp("synth") / "data", preset="tiny", seed=0)


@pytest.fixture
def project(tmp_path, dataset):
    folder = tmp_path / "data"
    shutil.copytree(dataset, folder, ignore=shutil.ignore_patterns("cache", "labels.sqlite*"))
    return folder


def run_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert data_main(["labels", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_ground_truth_import_projects_into_every_view(project):
    dataset = open_dataset(project)
    labels = labels_from_ground_truth(dataset, ["S1"], every=5)
    with dataset.open("S1_walk_1") as seq:
        frames = list(range(0, seq.num_frames, 5))
        assert [lab.frame for lab in labels if lab.sequence == "S1_walk_1"] == frames
        lab = labels[1]
        np.testing.assert_allclose(lab.joints3d, seq.joints3d[5])
        for c, cam in enumerate(seq.cameras):
            np.testing.assert_allclose(lab.points2d[c], cam.calibration.project(seq.joints3d[5]))
    assert {lab.subject for lab in labels} == {"S1"}
    assert (lab.visibility == VISIBLE).all() and (lab.source3d == SOURCES.index("imported")).all()


def test_cli_import_gt_keeps_existing_labels_unless_overwrite(project, capsys):
    first = run_json(capsys, str(project), "import-gt", "--subjects", "S1", "--every", "10")
    with LabelStore.open(project, read_only=True) as store:
        n = len(store)
        assert first == {"imported": n, "skipped_existing": 0, "revision": 1,
                         "store": str(project / "labels.sqlite")}
        assert {s for s, _ in store.keys()} == {"S1_walk_1", "S1_wave_1"}
    again = run_json(capsys, str(project), "import-gt", "--subjects", "S1", "--every", "5")
    assert again["skipped_existing"] == n and again["imported"] > 0
    forced = run_json(capsys, str(project), "import-gt", "--frames", "0", "--sequences",
                      "S9_walk_1,S1_walk_1", "--overwrite")
    assert forced["imported"] == 2 and forced["revision"] == 3
    info = run_json(capsys, str(project), "info")
    assert info["revision"] == 3 and info["sequences"]["S9_walk_1"]["frames"] == 1


@pytest.mark.parametrize("kind", ["csv", "npz", "json"])
def test_export_then_import_is_lossless(project, tmp_path, capsys, kind):
    run_json(capsys, str(project), "import-gt", "--subjects", "S1", "--every", "10")
    with LabelStore.open(project) as store:
        lab = store.get("S1_walk_1", 0)
        lab.visibility[1, 3] = 2  # occluded
        lab.points2d[1, 3] = np.nan
        lab.joints3d[4] = np.nan
        lab.source3d[4] = 0
        lab.error2d[0, 2] = 1.25
        store.put(lab)
        originals = list(store.labels())
    out = tmp_path / f"labels.{kind}"
    assert run_json(capsys, str(project), "export", str(out))["exported"] == len(originals)
    back = import_labels(out)
    assert len(back) == len(originals)
    for a, b in zip(originals, back):
        assert a.same_content(b), (a.sequence, a.frame)
    other = tmp_path / "other"
    other.mkdir()
    result = run_json(capsys, str(other), "import", str(out))
    assert result["imported"] == len(originals)


def test_bad_label_files_are_one_line_errors(project, tmp_path, capsys):
    junk = tmp_path / "junk.json"
    junk.write_text('{"format": "something else"}')
    capsys.readouterr()
    assert data_main(["labels", str(project), "import", str(junk)]) == 2
    err = capsys.readouterr().err.strip()
    assert "junk.json" in err and len(err.splitlines()) == 1
    assert data_main(["labels", str(project), "info"]) == 2  # no store yet
    assert not (project / "labels.sqlite").exists()
    with pytest.raises(Exception, match="unknown label file type"):
        export_labels([], tmp_path / "x.xlsx", 0)


def test_import_waits_for_the_writer_instead_of_fighting_it(project, capsys):
    studio = LabelStore.open(project)  # a Studio holds the store
    capsys.readouterr()
    assert data_main(["labels", str(project), "import-gt", "--every", "10"]) == 2
    assert "open for writing" in capsys.readouterr().err
    assert len(studio) == 0
    studio.close()


def test_trainer_fits_from_a_label_store_and_records_its_revision(project, tmp_path, capsys):
    run_json(capsys, str(project), "import-gt", "--subjects", "S1", "--every", "4")
    with LabelStore.open(project) as store:
        lab = store.get("S1_walk_1", 4)
        lab.joints3d[0] = np.nan  # an incomplete frame is left out, and counted
        store.put(lab)
        revision, frames = store.revision, len(store)
    events = tmp_path / "events.jsonl"
    code = train_main(["fit", "--data", str(project), "--labels",
                       str(project / "labels.sqlite"), "--crop-size", "32", "--width", "8",
                       "--embedding-dim", "16", "--pose-hidden", "32", "--orientation-hidden",
                       "16", "--steps", "3", "--tau", "3", "--instants-per-sequence", "4",
                       "--labelled-batch", "8", "--run-dir", str(tmp_path / "runs"),
                       "--run-id", "x", "--events", str(events), "--cache-dir",
                       str(tmp_path / "cache"), "--progress", "off"])
    assert code == 0
    start = read_events(events)[0]
    assert start["label_store"]["revision"] == revision
    assert start["label_store"]["frames"] == frames - 1 == start["labelled_frames"]
    assert start["label_store"]["incomplete"] == 1
    assert start["config"]["labels"] == str(project / "labels.sqlite")


def test_trainer_refuses_labels_of_unknown_sequences(project, tmp_path, capsys):
    run_json(capsys, str(project), "import-gt", "--subjects", "S1", "--every", "10")
    with LabelStore.open(project) as store:
        lab = store.get("S1_walk_1", 0)
        lab.sequence = "elsewhere"
        store.put(lab)
    code = train_main(["fit", "--data", str(project), "--labels", str(project), "--steps", "1",
                       "--run-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "c"),
                       "--crop-size", "32", "--progress", "off"])
    assert code == 2
    assert "elsewhere" in capsys.readouterr().err


def test_the_bench_takes_its_labels_from_a_store(project, tmp_path, capsys, monkeypatch):
    """`bench limited-supervision --labels`: the store's frames are the label set, named by
    its revision (stopped after the first run: one fit is enough to see which labels)."""
    import os
    import signal

    import trainer.bench as bench

    run_json(capsys, str(project), "import-gt", "--subjects", "S1", "--every", "6")
    with LabelStore.open(project, read_only=True) as store:
        frames, revision = len(store), store.revision
    real_fit = bench.fit
    seen = []

    def fit_then_stop(*args, **kwargs):
        seen.append(len(kwargs["labels"]))
        result = real_fit(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(bench, "fit", fit_then_stop)
    tiny = dict(crop_size=32, width=8, embedding_dim=16, pose_hidden=32, orientation_hidden=16,
                steps=2, tau=3, instants_per_sequence=3, labelled_batch=8, eval_stride=3)
    result = bench.limited_supervision("quick", seed=0, work_dir=str(tmp_path / "work"),
                                       overrides=tiny, data=project,
                                       labels=project / "labels.sqlite")
    assert seen == [frames]
    assert result["rows"][0]["labels"] == f"store r{revision}"
    assert result["label_store"]["revision"] == revision
    assert train_main(["bench", "limited-supervision", "--labels", "x.sqlite"]) == 2
