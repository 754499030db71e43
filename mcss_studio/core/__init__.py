"""Headless core of MCSS Studio: data sources, geometry, caches, model. Never imports Qt."""

from .errors import UserInputError
from .sources.dataset import Dataset, SequenceEntry, open_dataset, open_sequence

__all__ = ["Dataset", "SequenceEntry", "UserInputError", "open_dataset", "open_sequence"]
