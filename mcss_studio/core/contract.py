"""What a checkpoint expects of its input, read in one place.

A model only answers sensibly for crops made the way its training crops were made: the same
square size, the same margin around the person box, the same joint order, and viewing rays when
its orientation head reads them. `input_contract` reads all of it from a checkpoint's metadata
and model config; the Studio, `mcss-train evaluate/embed` and the prediction pipeline all use
it, so a model trained with `--crop-margin 0.3` gets 0.3-margin crops everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UserInputError
from .joints import JOINT_NAMES
from .model import ModelConfig

DEFAULT_CROP_SIZE = 128  # the trainer's default, for models handed over without metadata
DEFAULT_CROP_MARGIN = 0.2  # likewise; also the crop cache's default margin


@dataclass(frozen=True)
class InputContract:
    """Crop size (px), margin around the person box (fraction of its side), joint names in the
    model's output order, whether the model reads viewing rays, embedding size."""

    crop_size: int
    crop_margin: float
    joint_names: tuple[str, ...]
    uses_rays: bool
    embedding_dim: int


def input_contract(
    meta: dict, config: ModelConfig, source: str | Path | None = None
) -> InputContract:
    """The input contract of a checkpoint from its metadata (`load_checkpoint`'s dict) and model
    config; `source` names the file in errors. Missing fields take the trainer's defaults."""
    train = meta.get("train_config") or {}
    size = meta.get("crop_size", train.get("crop_size", DEFAULT_CROP_SIZE))
    margin = meta.get("crop_margin", train.get("crop_margin", DEFAULT_CROP_MARGIN))
    names = meta.get("joint_names") or list(JOINT_NAMES[: config.num_joints])
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 4096:
        raise UserInputError(source, f"crop size {size!r} in the checkpoint is not 8..4096 px")
    if not isinstance(margin, (int, float)) or isinstance(margin, bool) or not 0 <= margin <= 4:
        raise UserInputError(source, f"crop margin {margin!r} in the checkpoint is not 0..4")
    if len(names) != config.num_joints:
        raise UserInputError(source, "joint_names does not match the model's joint count")
    return InputContract(
        crop_size=size,
        crop_margin=float(margin),
        joint_names=tuple(str(n) for n in names),
        uses_rays=bool(config.ray_input),
        embedding_dim=int(config.embedding_dim),
    )
