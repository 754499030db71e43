"""Predictor: checkpoint (or model) -> 3D poses and embeddings for uint8 crops, on the best device.

Used by the prediction pipeline (core/pipeline.py: the Studio's inference worker and
`mcss-train embed`) and by `mcss-train evaluate`. Device "auto" picks CUDA (bf16 or fp16
autocast, channels_last) over Apple MPS over CPU. `contract` says what crops the model expects.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .contract import InputContract, input_contract
from .model import RAY_DIM, MCSSModel


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda if available, then mps, then cpu; anything else is passed to torch."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision where it pays: bf16 on CUDA when supported, else fp16; none on CPU/MPS."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def crops_to_tensor(crops: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, S, S, 3) RGB -> float (N, 3, S, S) in [0, 1] on device (channels_last on CUDA)."""
    t = torch.as_tensor(np.ascontiguousarray(crops)) if isinstance(crops, np.ndarray) else crops
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"crops must be uint8 (N, S, S, 3), got {tuple(t.shape)} {t.dtype}")
    t = t.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    if device.type == "cuda":
        t = t.contiguous(memory_format=torch.channels_last)
    return t


class Predictor:
    """Runs a trained MCSS model on crops; thread-confined (one per worker)."""

    def __init__(
        self,
        checkpoint_path_or_model: str | os.PathLike[str] | MCSSModel,
        device: str | torch.device = "auto",
        batch_size: int = 256,
    ) -> None:
        self.device = pick_device(device)
        if isinstance(checkpoint_path_or_model, torch.nn.Module):
            self.model = checkpoint_path_or_model
            self.meta: dict = {}
            source = None
        else:
            self.model, self.meta = load_checkpoint(checkpoint_path_or_model)
            source = checkpoint_path_or_model
        self.contract: InputContract = input_contract(self.meta, self.model.config, source)
        self.model = self.model.to(self.device).eval()
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.batch_size = batch_size

    @property
    def device_name(self) -> str:
        """Human-readable device, e.g. 'cuda:0 (NVIDIA H100)' or 'cpu'."""
        if self.device.type == "cuda":
            index = self.device.index or 0
            return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
        return str(self.device)

    @property
    def uses_rays(self) -> bool:
        """True when the orientation head reads viewing rays (core.model.crop_rays)."""
        return self.contract.uses_rays

    @torch.no_grad()
    def predict(self, crops: np.ndarray, rays: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """uint8 (N, S, S, 3) -> pose_cam and pose_canonical (N, J, 3) mm root-relative
        (camera frame / body frame), rotation (N, 3, 3) and embedding (N, D), float32 numpy.

        rays: optional (N, 3) from core.model.crop_rays (crop squares + calibration); without
        them the crops are taken as seen along the optical axis. Models without ray input
        ignore them."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if rays is not None:
            rays = np.asarray(rays, dtype=np.float32).reshape(-1, RAY_DIM)
            if len(rays) != len(crops):
                raise ValueError(f"rays must be ({len(crops)}, {RAY_DIM}), got {rays.shape}")
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(crops), self.batch_size):
            x = crops_to_tensor(crops[start:start + self.batch_size], self.device)
            r = (None if rays is None or not self.uses_rays
                 else torch.from_numpy(rays[start:start + self.batch_size]).to(self.device))
            with autocast_for(self.device):
                out = self.model(x, rays=r) if r is not None else self.model(x)
            for key, value in out.items():
                parts.setdefault(key, []).append(value.float().cpu().numpy())
        if not parts:
            c = self.model.config
            return {"pose_cam": np.zeros((0, c.num_joints, 3), np.float32),
                    "pose_canonical": np.zeros((0, c.num_joints, 3), np.float32),
                    "rotation": np.zeros((0, 3, 3), np.float32),
                    "embedding": np.zeros((0, c.embedding_dim), np.float32)}
        return {k: np.concatenate(v) for k, v in parts.items()}
