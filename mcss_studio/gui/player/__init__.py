"""The synchronised multi-view player: camera views, their grid, timeline and transport."""
