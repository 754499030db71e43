"""Training configuration: one dataclass, loadable from TOML, every field also a --flag."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mcss_studio.core.errors import UserInputError
from mcss_studio.core.tomlio import tomllib


@dataclass
class TrainConfig:
    """Every setting of `mcss-train fit`. Empty subject lists mean "the dataset's split"."""

    # data
    data: str = ""  # dataset folder (manifest.json)
    cache_dir: str = ""  # crop caches; default <data>/cache
    crop_size: int = 128
    crop_margin: float = 0.2
    train_subjects: list[str] = field(default_factory=list)  # unlabelled multi-view video
    labelled_subjects: list[str] = field(default_factory=list)  # 3D labels from ground truth
    test_subjects: list[str] = field(default_factory=list)
    label_every: int = 1  # keep every n-th labelled frame
    # model
    arch: str = "resnet18"
    width: int = 64
    embedding_dim: int = 128
    pose_hidden: int = 512
    orientation_hidden: int = 256
    pose_on_unit_embedding: bool = True  # False: pose head reads the embedding before L2 norm
    ray_input: bool = True  # orientation head reads the crop's viewing ray (core.model.crop_rays)
    orientation_spatial: bool = False  # orientation head reads a 2x2 feature grid, not the mean
    # method
    lambda_metric: float = 0.1  # 0 = baseline (labels only); 1 collapsed with hardest mining
    # lambda = 0 runs normally load no unlabelled images; True passes the multi-view batches
    # through the network anyway (BatchNorm statistics see them, no loss does): the control
    # that separates what MCSS's metric loss adds from what mere exposure to the images adds
    unlabelled_images: bool = False
    mining: str = "hardest"  # hardest | semihard | random
    tau: int = 10  # minimum temporal distance (frames) of in-sequence negatives
    tau_max: int = 0  # maximum one (0 = none): periodic motion repeats poses a period later
    cross_sequence_negatives: bool = True  # also frames of other sequences as negatives
    # how a batch picks a sequence's instants: "uniform" (any frames) or "window" (a comb
    # around a random centre, gaps in [tau, tau_max / 2], so every instant has in-window
    # negatives: trainer.data.window_instants)
    instant_sampling: str = "uniform"
    margin: float = 0.2
    soft_margin: bool = False  # softplus(d_ap - d_an) instead of relu(d_ap - d_an + margin)
    metric_warmup: int = 0  # steps over which lambda ramps linearly from 0 to lambda_metric
    mining_warmup: int = 0  # steps of random negatives before `mining` takes over
    canonical_weight: float = 1.0  # weight of the canonical-frame term of the pose loss
    rotation_weight: float = 0.0  # weight of a direct loss on the orientation (chordal distance)
    sequences_per_batch: int = 4
    instants_per_sequence: int = 8
    views_per_instant: int = 2
    labelled_batch: int = 32
    # augmentation
    augment: bool = True
    color_jitter: float = 0.2
    scale_jitter: float = 0.1
    shift_jitter: float = 0.05
    flip: bool = True
    # optimisation
    steps: int = 5000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 5.0
    amp: bool = True  # autocast on CUDA (bf16 if supported, else fp16)
    device: str = "auto"
    seed: int = 0
    # bookkeeping
    run_dir: str = "runs"
    run_id: str = ""  # default: time stamp
    log_every: int = 10
    triplet_log_every: int = 100
    triplet_log_size: int = 16
    eval_every: int = 0  # 0 = only at the end
    eval_stride: int = 5  # evaluate every n-th test frame
    checkpoint_every: int = 500
    resume: str = ""  # checkpoint to resume from (exact: model, optimiser, scheduler, step, RNG)

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
        if self.lambda_metric < 0 or self.lr <= 0 or self.margin < 0:
            raise bad("lambda_metric and margin must be >= 0 and lr > 0")
        if min(self.metric_warmup, self.mining_warmup, self.canonical_weight,
               self.rotation_weight) < 0:
            raise bad("metric_warmup, mining_warmup, canonical_weight and rotation_weight "
                      "must be >= 0")

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
                            metavar=metavar)


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
