"""Checkpoints as safetensors: tensors plus JSON metadata, never pickle.

One file holds the model weights and, for resumable training checkpoints, the optimiser state,
scheduler state, step and RNG states. Loading parses only the safetensors header and raw tensor
bytes, so a hostile file can at worst be refused, never run code.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from .atomic import atomic_open, make_dirs
from .errors import UserInputError
from .joints import JOINT_NAMES
from .model import MCSSModel, ModelConfig

FORMAT = "mcss-checkpoint"
VERSION = 1
_MODEL = "model."
_OPTIM = "optim."
_RNG = "rng."


def _flatten_optimizer(state: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """Optimizer state_dict -> JSON-able dict; its tensors go into `tensors` under optim.*."""
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, entry in state["state"].items():
        plain_entry = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{_OPTIM}{pid}.{key}"] = value.detach().cpu().contiguous()
                plain_entry[key] = {"tensor": f"{_OPTIM}{pid}.{key}"}
            else:
                plain_entry[key] = value
        plain["state"][str(pid)] = plain_entry
    return plain


def _unflatten_optimizer(plain: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state = {}
    for pid, entry in plain["state"].items():
        restored = {}
        for key, value in entry.items():
            if isinstance(value, dict) and "tensor" in value:
                restored[key] = tensors[value["tensor"]]
            else:
                restored[key] = value
        state[int(pid)] = restored
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    meta: dict | None = None,
    training_state: dict | None = None,
) -> Path:
    """Write model weights + metadata (+ optional training state) atomically to `path`.

    A full disk or unwritable folder raises a UserInputError and leaves any old file as it was.

    `meta` is free JSON (train config, crop size, ...); model config and joint names are added.
    `training_state` may hold `optimizer` (a state_dict), `scheduler` (JSON-able dict), `step`,
    `numpy_rng` (bit generator state dict) and `torch_rng` / `cuda_rng` (tensors).
    """
    net = model.module if hasattr(model, "module") else model
    tensors = _tensors(_MODEL, net)
    document = dict(meta or {})
    document.update({"format": FORMAT, "version": VERSION, "model_config": net.config.to_dict(),
                     "joint_names": list(JOINT_NAMES)})
    if training_state is not None:
        ts = dict(training_state)
        plain: dict[str, Any] = {"step": int(ts.get("step", 0)),
                                 "scheduler": ts.get("scheduler"),
                                 "numpy_rng": ts.get("numpy_rng"),
                                 "extra": ts.get("extra")}
        if ts.get("optimizer") is not None:
            plain["optimizer"] = _flatten_optimizer(ts["optimizer"], tensors)
        if ts.get("torch_rng") is not None:
            tensors[_RNG + "torch"] = ts["torch_rng"].cpu()
        for i, s in enumerate(ts.get("cuda_rng") or []):
            tensors[f"{_RNG}cuda.{i}"] = s.cpu()
        plain["cuda_rng_count"] = len(ts.get("cuda_rng") or [])
        document["training_state"] = plain
    return _write(Path(path), tensors, document)


def _tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's state as CPU tensors named prefix + key."""
    return {prefix + k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _write(path: Path, tensors: dict[str, torch.Tensor], document: dict) -> Path:
    """The safetensors file with `document` as its MCSS metadata, written atomically."""
    data = save(tensors, metadata={"mcss": json.dumps(document)})
    # written by Python, not by safetensors' own file code: a full disk then is an OSError that
    # atomic_open turns into a one-line error, and the file gets the ordinary mode (umask)
    make_dirs(path.parent)
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return path


def _load_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str,
                  path: Path, what: str) -> None:
    """The tensors named prefix + key into `module` (strict); a mismatch is a one-line
    UserInputError naming the file."""
    weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = (first[1:2] or first[:1] or [""])[0].strip()
        raise UserInputError(path, f"{what} do not fit the model: {detail}") from None


def _check_file(path: Path) -> None:
    """Refuse a missing or unreadable file, and a pickle / zip one, before any parser sees it."""
    if not path.is_file():
        raise UserInputError(path, "checkpoint file not found")
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:  # unreadable (permissions, I/O): one line, not a traceback
        raise UserInputError(path, f"cannot read the checkpoint ({exc.strerror})") from None
    # safetensors: u64 little-endian header length, then the JSON header ("{"); that length's low
    # byte may be 0x80 (pickle's first byte), so only a file without that layout is pickle / zip
    length = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
    looks_safetensors = head[8:9] == b"{" and 8 + length <= path.stat().st_size
    if (head[:2] == b"PK" or head[:1] == b"\x80") and not looks_safetensors:
        raise UserInputError(path, "pickle/zip checkpoints are refused; expected safetensors")


def _document(path: Path, raw_meta: str | None) -> dict:
    """The MCSS metadata document of a safetensors header, checked for format and version."""
    if raw_meta is None:
        raise UserInputError(path, "no MCSS metadata in this safetensors file")
    try:
        document = json.loads(raw_meta)
    except ValueError:
        raise UserInputError(path, "checkpoint metadata is not valid JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UserInputError(path, f"not an MCSS checkpoint (format must be {FORMAT!r})")
    if document.get("version") != VERSION:
        raise UserInputError(path, f"unsupported checkpoint version {document.get('version')!r}")
    return document


def _read(path: Path, tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw_meta = (f.metadata() or {}).get("mcss")
            weights = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as exc:  # the safetensors parser reports malformed files in several ways
        raise UserInputError(path, f"not a valid safetensors checkpoint ({exc})") from None
    return weights, _document(path, raw_meta)


def read_metadata(path: str | os.PathLike[str]) -> dict:
    """A checkpoint's (or encoder file's) MCSS metadata document: model_config, train_config,
    training_state without its tensors, ... Reads only the safetensors header, so it is cheap
    on any file size. Refuses a missing, unreadable, pickle/zip or malformed file and a header
    that is not an MCSS document, with load_checkpoint's one-line errors; the model config and
    the weights are not checked (load_checkpoint does that)."""
    return _read(Path(path), tensors=False)[1]


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[MCSSModel, dict]:
    """Rebuild the model from a checkpoint; returns (model in eval mode, metadata dict)."""
    path = Path(path)
    tensors, document = _read(path)
    try:
        config = ModelConfig.from_dict(dict(document.get("model_config") or {}))
    except (TypeError, ValueError) as exc:
        raise UserInputError(path, f"bad model_config: {exc}") from None
    names = document.get("joint_names")
    if names is not None and len(names) != config.num_joints:
        raise UserInputError(path, "joint_names does not match the model's joint count")
    model = MCSSModel(config)
    _load_weights(model, tensors, _MODEL, path, "weights")
    model.to(device).eval()
    return model, document


def load_training_state(path: str | os.PathLike[str]) -> dict:
    """Optimizer/scheduler/step/RNG saved by save_checkpoint(training_state=...), for resume."""
    path = Path(path)
    tensors, document = _read(path)
    plain = document.get("training_state")
    if not isinstance(plain, dict):
        raise UserInputError(path, "checkpoint has no training state (cannot resume from it)")
    try:
        state = {"step": int(plain["step"]), "scheduler": plain.get("scheduler"),
                 "numpy_rng": plain.get("numpy_rng"), "extra": plain.get("extra")}
        if plain.get("optimizer") is not None:
            state["optimizer"] = _unflatten_optimizer(plain["optimizer"], tensors)
        state["torch_rng"] = tensors.get(_RNG + "torch")
        state["cuda_rng"] = [tensors[f"{_RNG}cuda.{i}"] for i in range(plain["cuda_rng_count"])]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserInputError(path, f"malformed training state ({exc})") from None
    return state


def checkpoint_digest(path: str | os.PathLike[str]) -> str:
    """Short content hash, for keying caches (e.g. embeddings) by checkpoint."""
    import hashlib

    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def numpy_rng_state(rng: np.random.Generator) -> dict:
    """JSON-able state of a numpy Generator (restore with restore_numpy_rng)."""
    return rng.bit_generator.state


_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def restore_numpy_rng(state: dict) -> np.random.Generator:
    """Inverse of numpy_rng_state; only numpy's own bit generators are accepted."""
    if state.get("bit_generator") not in _BIT_GENERATORS:
        raise ValueError(f"unknown bit generator {state.get('bit_generator')!r}")
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


ENCODER_PREFIX = _MODEL + "encoder."


def save_encoder(
    path: str | os.PathLike[str], model: MCSSModel, meta: dict | None = None
) -> Path:
    """Write only the encoder's weights (`model.encoder.*`) with the model config and `meta`,
    atomically: a backbone other runs start from (`init_checkpoint`), no heads."""
    document = dict(meta or {})
    document.update({"format": FORMAT, "version": VERSION, "contents": "encoder",
                     "model_config": model.config.to_dict()})
    return _write(Path(path), _tensors(ENCODER_PREFIX, model.encoder), document)


EMBEDDING_HEAD_PREFIX = _MODEL + "embedding_head."


def load_encoder(path: str | os.PathLike[str], model: MCSSModel,
                 embedding_head: bool = False) -> dict:
    """Copy the encoder weights of an MCSS checkpoint or encoder file into `model.encoder`
    (heads untouched); returns what a run records: path, content digest and the file's encoder
    settings. A file whose encoder is not the model's raises a one-line UserInputError.

    With `embedding_head`, the embedding head is copied too (the record then says so), so that
    a run starts from an embedding another run trained, e.g. with the metric loss alone; the
    pose and orientation heads stay as they were. That needs a whole MCSS checkpoint: an
    encoder file has no embedding head and is refused, as is a head of another size."""
    path = Path(path)
    tensors, document = _read(path)
    if embedding_head and not any(k.startswith(EMBEDDING_HEAD_PREFIX) for k in tensors):
        raise UserInputError(path, "has no embedding head (an encoder file?): carrying the "
                                   "embedding head needs a whole MCSS checkpoint")
    saved = dict(document.get("model_config") or {})
    want = {k: getattr(model.config, k) for k in ("arch", "width", "stem")}
    have = {k: saved.get(k, "resnet" if k == "stem" else None) for k in want}
    if have != want:
        shown = ", ".join(f"{k}={have[k]!r} (the run: {want[k]!r})" for k in want
                          if have[k] != want[k])
        raise UserInputError(path, f"encoder does not fit this model: {shown}")
    if embedding_head:  # checked before anything is copied: a refusal leaves the model as it was
        _load_weights(copy.deepcopy(model.embedding_head), tensors, EMBEDDING_HEAD_PREFIX,
                      path, "embedding head weights")
    _load_weights(model.encoder, tensors, ENCODER_PREFIX, path, "encoder weights")
    record = {"path": str(path), "digest": checkpoint_digest(path), **have}
    if embedding_head:
        _load_weights(model.embedding_head, tensors, EMBEDDING_HEAD_PREFIX, path,
                      "embedding head weights")
        record["embedding_head"] = True
    return record
