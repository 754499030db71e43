"""`mcss-data labels PROJECT import-gt|import|export|info`: the label store from the command line.

PROJECT is a project folder (its store is PROJECT/labels.sqlite, its dataset the project's
first source) or a dataset folder used as one. Imports never replace a frame that already has
labels unless --overwrite is given: hand-made labels are not lost to a careless import. Every
action prints one line, or one JSON object with --json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.errors import UserInputError
from ..core.labels import LabelStore

ACTIONS = ("import-gt", "import", "export", "info")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("labels", help="the project's label store: import ground truth or files, "
                                      "export, info")
    p.add_argument("project", help="project folder (or dataset folder) holding labels.sqlite")
    actions = p.add_subparsers(dest="action", required=True)
    gt = actions.add_parser("import-gt", help="labels from the dataset's 3D ground truth for "
                                              "chosen frames (a limited-label study)")
    gt.add_argument("--subjects", default="", help="comma-separated subjects (default: all)")
    gt.add_argument("--sequences", default="", help="comma-separated sequence names")
    gt.add_argument("--every", type=int, default=10, help="every n-th frame (default 10)")
    gt.add_argument("--frames", default="", help="comma-separated frame numbers instead")
    imp = actions.add_parser("import", help="labels from a .csv, .npz or .json export")
    imp.add_argument("file")
    for q in (gt, imp):
        q.add_argument("--overwrite", action="store_true",
                       help="replace frames that already have labels (default: keep them)")
    exp = actions.add_parser("export", help="write the labels to .csv, .npz or .json")
    exp.add_argument("file")
    exp.add_argument("--sequence", help="only this sequence")
    actions.add_parser("info", help="frames per sequence, revision, schema")
    for q in (gt, imp, exp, actions.choices["info"]):
        q.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_labels)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _dataset_folder(project: Path) -> Path:
    from ..core.project import is_project, read_project

    return read_project(project).sources[0] if is_project(project) else project


def _store(project: Path, read_only: bool) -> LabelStore:
    if not project.is_dir():
        raise UserInputError(project, "no such folder")
    store = LabelStore.open(project, read_only=read_only, create=not read_only)
    if store.read_only and not read_only:
        store.close()
        raise UserInputError(store.path, f"cannot import: {store.read_only_reason}")
    return store


def _put_new(store: LabelStore, labels: list, overwrite: bool) -> dict:
    existing = set(store.keys())
    keep = [lab for lab in labels if overwrite or (lab.sequence, lab.frame) not in existing]
    revision = store.put_many(keep) if keep else store.revision
    return {"imported": len(keep), "skipped_existing": len(labels) - len(keep),
            "revision": revision, "store": str(store.path)}


def cmd_labels(args: argparse.Namespace) -> int:
    project = Path(args.project)
    if args.action == "info":
        path = project / "labels.sqlite"
        if not path.exists():
            raise UserInputError(path, "no label store here yet (import or label first)")
        with LabelStore.open(project, read_only=True) as store:
            result = store.info()
        result["read_only"] = None
    elif args.action == "export":
        from ..core.label_io import export_labels

        with LabelStore.open(project, read_only=True, create=False) as store:
            n = export_labels(store.labels(args.sequence), args.file, store.revision)
            result = {"exported": n, "file": str(args.file), "revision": store.revision}
    else:
        result = _import(args, project)
    if args.json:
        print(json.dumps(result))
    else:
        print(_summary(args.action, result))
    return 0


def _import(args: argparse.Namespace, project: Path) -> dict:
    from ..core import label_io

    if args.action == "import":
        labels = label_io.import_labels(args.file)
    else:
        from ..core import open_dataset

        if args.every < 1:
            raise UserInputError("--every", "must be at least 1")
        try:
            frames = [int(f) for f in _csv(args.frames)] or None
        except ValueError:
            raise UserInputError("--frames", f"expected frame numbers, got {args.frames!r}") \
                from None
        dataset = open_dataset(_dataset_folder(project))
        labels = label_io.labels_from_ground_truth(
            dataset, _csv(args.subjects) or None, args.every, _csv(args.sequences) or None,
            frames)
        if not labels:
            raise UserInputError(dataset.root, "no 3D ground truth in the chosen sequences")
    with _store(project, read_only=False) as store:
        return _put_new(store, labels, args.overwrite)


def _summary(action: str, r: dict) -> str:
    if action == "info":
        seqs = ", ".join(f"{s} {v['frames']}" for s, v in r["sequences"].items()) or "none"
        return (f"{r['path']}: {r['frames']} labelled frames ({r['frames_with_3d']} with all "
                f"3D joints), revision {r['revision']}, schema {r['schema']}; per sequence: "
                f"{seqs}")
    if action == "export":
        return f"{r['exported']} labelled frames -> {r['file']} (revision {r['revision']})"
    return (f"{r['imported']} labelled frames imported into {r['store']}, "
            f"{r['skipped_existing']} already labelled kept (--overwrite replaces them); "
            f"revision {r['revision']}")
