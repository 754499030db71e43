"""Synthetic multi-view human-motion datasets (`mcss-data synth`): demo data and ground truth.

`generate(out, preset, ...)` renders a dataset folder in the docs/FORMATS.md layout; `PRESETS`
lists the named sizes. No Qt, no downloads: bodies, motion, rooms and cameras are procedural.
"""

from .generate import DatasetPlan, SequencePlan, generate, plan_dataset
from .motion import ACTIONS
from .presets import PRESETS, Preset
from .sheet import contact_sheet

__all__ = [
    "contact_sheet",
    "ACTIONS",
    "PRESETS",
    "DatasetPlan",
    "Preset",
    "SequencePlan",
    "generate",
    "plan_dataset",
]
