"""The trainer's triplet mining: the shared implementation in mcss_studio/core/mining.py, which
the Studio's "Mine now" calls too, re-exported under the trainer's names."""

from mcss_studio.core.mining import (  # noqa: F401 - the trainer's names for the shared code
    STRATEGIES,
    Triplets,
    mine_triplets,
    negative_statistics,
    triplet_masks,
)
