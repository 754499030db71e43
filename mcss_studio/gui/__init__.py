"""MCSS Studio's Qt GUI: one shared state model, panels that observe it, workers for long work."""

