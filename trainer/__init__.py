"""Headless MCSS trainer: batches, mining, losses, metrics, training loop and `mcss-train`."""
