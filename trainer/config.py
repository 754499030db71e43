"""Training configuration: one dataclass, loadable from TOML, every field also a --flag."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mcss_studio.core.errors import UserInputError
from mcss_studio.core.model import STEM_STRIDES
from mcss_studio.core.tomlio import tomllib


def _setting(default: Any, help: str) -> Any:
    """A TrainConfig field with its help text: the one description of the setting, shown by
    `mcss-train fit --help` (list defaults are given as `list`)."""
    if default is list:
        return field(default_factory=list, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of `mcss-train fit`. Empty subject lists mean "the dataset's split"."""

    # data
    data: str = _setting("", "dataset folder (with manifest.json)")
    cache_dir: str = _setting("", "folder of the crop caches (default: <data>/cache)")
    crop_size: int = _setting(128, "side of the square person crop fed to the network, px")
    crop_margin: float = _setting(0.2, "context added around the person box, as a fraction "
                                       "of its size")
    train_subjects: list[str] = _setting(list, "subjects whose unlabelled multi-view video "
                                               "trains the metric loss (default: the split's)")
    labelled_subjects: list[str] = _setting(list, "subjects whose ground-truth 3D poses are "
                                                  "used as labels (default: the split's)")
    test_subjects: list[str] = _setting(list, "subjects evaluated (default: the split's)")
    label_every: int = _setting(1, "keep every n-th labelled frame (fewer labels)")
    labels: str = _setting("", "label store (a project's labels.sqlite, or its folder) whose "
                               "frames with all 17 3D joints are the labels, instead of the "
                               "ground truth of labelled_subjects; the run records its revision")
    # model
    arch: str = _setting("resnet18", "encoder: resnet18, resnet34 or resnet50")
    width: int = _setting(64, "channels of the encoder's first stage (64 = the standard ResNet)")
    stem: str = _setting("resnet", "encoder stem: resnet (7x7 stride 2 + max pool, crop / 4 "
                                   "before the first stage), nopool (crop / 2) or small (3x3 "
                                   "stride 1, crop / 1: keeps thin limbs in small crops, costs "
                                   "more per step)")
    embedding_dim: int = _setting(128, "size of the pose embedding")
    pose_hidden: int = _setting(512, "hidden units of the canonical-pose head")
    orientation_hidden: int = _setting(256, "hidden units of the orientation head")
    pose_on_unit_embedding: bool = _setting(True, "pose head reads the L2-normalised embedding "
                                                  "(false: the embedding before normalisation)")
    ray_input: bool = _setting(True, "orientation head also reads the crop's viewing ray "
                                     "(core.model.crop_rays)")
    orientation_spatial: bool = _setting(False, "orientation head reads a 2x2 feature grid "
                                                "instead of the mean feature")
    embedding_spatial: bool = _setting(False, "embedding head (and so the pose) reads a 2x2 "
                                              "feature grid instead of the mean feature")
    pose_direct: bool = _setting(False, "pose head regresses the camera-frame pose from the "
                                        "embedding plus free view dimensions, instead of a "
                                        "canonical pose times the orientation head's rotation")
    init_checkpoint: str = _setting("", "start the encoder from these weights (an MCSS checkpoint "
                                        "or encoder file, safetensors; e.g. benchmarks/"
                                        "pretrain_backbone.py's) instead of random ones; the "
                                        "heads start random; recorded in checkpoints")
    init_embedding_head: bool = _setting(False, "with init_checkpoint: also start the embedding "
                                                "head from that file (a whole MCSS checkpoint, "
                                                "e.g. of a metric-loss-only run), so the pose "
                                                "head reads an embedding already trained")
    # method
    lambda_metric: float = _setting(0.1, "weight of the multi-view metric loss (0 = baseline "
                                         "on labels only; 1 collapsed with hardest mining)")
    unlabelled_images: bool = _setting(False, "with lambda_metric 0: pass the unlabelled "
                                              "multi-view batches through the network anyway "
                                              "(BatchNorm sees them, no loss does): the control "
                                              "that separates the metric loss from exposure")
    mining: str = _setting("hardest", "negative mining: hardest, semihard or random")
    tau: int = _setting(10, "minimum temporal distance (frames) of in-sequence negatives")
    tau_max: int = _setting(0, "maximum temporal distance of in-sequence negatives (0 = none; "
                               "periodic motion repeats poses a period later)")
    cross_sequence_negatives: bool = _setting(True, "also take negatives from other sequences")
    instant_sampling: str = _setting("uniform", "how a batch picks a sequence's instants: "
                                                "uniform (any frames) or window (a comb around "
                                                "a random centre, gaps in [tau, tau_max / 2], so "
                                                "every instant has in-window negatives)")
    margin: float = _setting(0.2, "triplet margin")
    soft_margin: bool = _setting(False, "softplus(d_ap - d_an) instead of "
                                        "relu(d_ap - d_an + margin)")
    metric_warmup: int = _setting(0, "steps over which lambda_metric ramps up linearly from 0")
    mining_warmup: int = _setting(0, "steps of random negatives before `mining` takes over")
    pose_weight: float = _setting(1.0, "weight of the 3D pose loss (0: no 3D label trains "
                                       "anything, e.g. 2D-only pretraining with keypoint_weight)")
    canonical_weight: float = _setting(1.0, "weight of the canonical-frame term of the pose "
                                            "loss")
    rotation_weight: float = _setting(0.0, "weight of a direct loss on the predicted "
                                           "orientation (chordal distance)")
    keypoint_weight: float = _setting(0.0, "weight of an auxiliary loss on the labelled joints' "
                                           "2D positions in the crop (the 3D labels projected "
                                           "into the view; 0 = no keypoint head)")
    keypoint_spatial: bool = _setting(False, "the keypoint head is a soft-argmax over per-joint "
                                             "heat maps of the stride-8 features (integral "
                                             "regression) instead of a linear map of the "
                                             "pooled features")
    sequences_per_batch: int = _setting(4, "sequences in each unlabelled batch")
    instants_per_sequence: int = _setting(8, "time instants drawn from each sequence")
    views_per_instant: int = _setting(2, "camera views of each instant (>= 2 for the metric "
                                         "loss)")
    labelled_batch: int = _setting(32, "labelled crops in each batch")
    # augmentation
    augment: bool = _setting(True, "augment the training crops (the five settings below)")
    color_jitter: float = _setting(0.2, "strength of brightness/contrast/saturation jitter")
    scale_jitter: float = _setting(0.1, "random crop scale change, as a fraction")
    shift_jitter: float = _setting(0.05, "random crop shift, as a fraction of the crop")
    flip: bool = _setting(True, "random horizontal flips (left and right joints swapped)")
    channel_shuffle: float = _setting(0.0, "probability of permuting a training crop's RGB "
                                           "channels (subjects differ by clothing colour)")
    # optimisation
    steps: int = _setting(5000, "training steps")
    lr: float = _setting(1e-3, "peak learning rate of AdamW (linear warm-up, then cosine decay "
                                  "to 1%%)")
    weight_decay: float = _setting(1e-4, "AdamW weight decay")
    warmup_steps: int = _setting(100, "steps of linear learning-rate warm-up")
    grad_clip: float = _setting(5.0, "clip the gradient norm to this value")
    amp: bool = _setting(True, "mixed precision on CUDA (bf16 if supported, else fp16)")
    device: str = _setting("auto", "auto, cpu, cuda or cuda:N")
    seed: int = _setting(0, "random seed (data order, augmentation, initialisation)")
    # bookkeeping
    run_dir: str = _setting("runs", "folder that holds the runs")
    run_id: str = _setting("", "name of this run's folder in run_dir (default: a time stamp)")
    log_every: int = _setting(10, "steps between training-loss events")
    triplet_log_every: int = _setting(100, "steps between logged samples of mined triplets")
    triplet_log_size: int = _setting(16, "triplets in each logged sample")
    eval_every: int = _setting(0, "steps between evaluations (0 = only at the end)")
    eval_stride: int = _setting(5, "evaluate every n-th test frame")
    checkpoint_every: int = _setting(500, "steps between checkpoints")
    resume: str = _setting("", "checkpoint to continue from (exactly: model, optimiser, "
                               "scheduler, step, random state); its settings must equal these "
                               "(see --override-settings)")
    override_settings: bool = _setting(False, "with --resume: continue even though settings "
                                              "(crop size, steps, model, method...) differ from "
                                              "the checkpoint's; the result is then not the run "
                                              "it continues")

    def validate(self, source: str | os.PathLike[str] | None = "config") -> None:
        """Raise UserInputError for values training cannot use."""
        def bad(problem: str) -> UserInputError:
            return UserInputError(source, problem)

        if self.mining not in ("hardest", "semihard", "random"):
            raise bad(f"mining must be hardest, semihard or random, not {self.mining!r}")
        if self.instant_sampling not in ("uniform", "window"):
            raise bad(f"instant_sampling must be uniform or window, not "
                      f"{self.instant_sampling!r}")
        if self.arch not in ("resnet18", "resnet34", "resnet50"):
            raise bad(f"arch must be resnet18, resnet34 or resnet50, not {self.arch!r}")
        if self.stem not in STEM_STRIDES:
            raise bad(f"stem must be {', '.join(STEM_STRIDES)}, not {self.stem!r}")
        if self.tau < 1:
            raise bad("tau must be at least 1 frame")
        if self.tau_max and self.tau_max < self.tau:
            raise bad("tau_max must be 0 (no limit) or at least tau")
        for name in ("steps", "crop_size", "sequences_per_batch", "instants_per_sequence",
                     "views_per_instant", "embedding_dim", "width", "label_every", "eval_stride"):
            if getattr(self, name) < 1:
                raise bad(f"{name} must be at least 1")
        if self.views_per_instant < 2 and self.lambda_metric > 0:
            raise bad("views_per_instant must be at least 2 for the metric loss")
        if self.pose_weight == 0 and self.keypoint_weight == 0 and self.lambda_metric == 0:
            raise bad("pose_weight, keypoint_weight and lambda_metric are all 0: nothing "
                      "to train")
        if self.init_embedding_head and not self.init_checkpoint:
            raise bad("init_embedding_head needs init_checkpoint (the file to take it from)")
        if self.lambda_metric < 0 or self.lr <= 0 or self.margin < 0:
            raise bad("lambda_metric and margin must be >= 0 and lr > 0")
        if min(self.metric_warmup, self.mining_warmup, self.canonical_weight,
               self.rotation_weight, self.pose_weight, self.keypoint_weight) < 0:
            raise bad("metric_warmup, mining_warmup, pose_weight, canonical_weight, "
                      "rotation_weight and keypoint_weight must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], source: str | os.PathLike[str] = "config"
    ) -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise UserInputError(source, f"unknown setting(s) {', '.join(unknown)}")
        defaults = cls()
        values = {}
        for key, value in data.items():
            expected = type(getattr(defaults, key))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise UserInputError(source, f"{key} must be {expected.__name__}, got {value!r}")
            if expected is list and not all(isinstance(v, str) for v in value):
                raise UserInputError(source, f"{key} must be a list of strings")
            values[key] = value
        config = cls(**values)
        config.validate(source)
        return config


# settings that may differ between a run and its resume: where things are and how often to
# report, none of which changes the trained weights
FREE_ON_RESUME = frozenset({
    "data", "cache_dir", "test_subjects", "device", "run_dir", "run_id", "resume",
    "override_settings", "log_every", "triplet_log_every", "triplet_log_size", "eval_every",
    "eval_stride", "checkpoint_every",
})


def resume_differences(saved: dict, requested: TrainConfig) -> list[tuple[str, Any, Any]]:
    """(field, saved value, requested value) for each training setting that differs.

    Fields a checkpoint from an older version does not have are not compared.
    """
    wanted = requested.to_dict()
    return [(k, saved[k], wanted[k]) for k in wanted
            if k not in FREE_ON_RESUME and k in saved and saved[k] != wanted[k]]


def load_config(path: str | os.PathLike[str]) -> TrainConfig:
    """Read a TOML file (top-level keys, or a [train] table) into a TrainConfig."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(path, "config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(path, f"not valid TOML ({exc})") from None
    if isinstance(data.get("train"), dict):
        data = data["train"]
    return TrainConfig.from_dict(data, path)


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _parse_list(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def field_help(name: str) -> str:
    """The help text of a TrainConfig field, with its default (%% escaped for argparse)."""
    text = next(f for f in fields(TrainConfig) if f.name == name).metadata["help"]
    if "(default:" in text:  # an empty default explained in the text itself
        return text
    default = getattr(TrainConfig(), name)
    shown = str(default).lower() if isinstance(default, bool) else default
    return f"{text} (default: {shown if shown != '' else 'none'})"


def _field_parsers() -> dict[str, tuple[Callable[[str], Any], str | None]]:
    """TrainConfig field -> (text -> value, metavar): one typing for --flags and --set."""
    defaults = TrainConfig()
    out: dict[str, tuple[Callable[[str], Any], str | None]] = {}
    for f in fields(TrainConfig):
        kind = type(getattr(defaults, f.name))
        out[f.name] = ((_parse_bool, "BOOL") if kind is bool
                       else (_parse_list, "A,B") if kind is list else (kind, None))
    return out


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """--<field> for every TrainConfig field (underscores as dashes); default None = unset."""
    for name, (parse, metavar) in _field_parsers().items():
        parser.add_argument("--" + name.replace("_", "-"), type=parse, default=None,
                            metavar=metavar, help=field_help(name))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TOML file (if --config) overridden by any flag given on the command line."""
    base = load_config(args.config).to_dict() if getattr(args, "config", None) else {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            base[f.name] = value
    return TrainConfig.from_dict(base, args.config if getattr(args, "config", None) else "flags")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["key=value", ...] -> {field: typed value}, typed like the TrainConfig field."""
    parsers = _field_parsers()
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in parsers:
            raise UserInputError("--set", f"expected KEY=VALUE naming a training setting, "
                                          f"got {item!r}")
        parse = parsers[key][0]
        try:
            out[key] = parse(text)
        except (ValueError, argparse.ArgumentTypeError):
            kind = type(getattr(TrainConfig(), key)).__name__
            raise UserInputError("--set", f"{key} must be {kind}, got {text!r}") from None
    return out
