"""MCSS Studio: multiview-consistent semi-supervised 3D human pose, from data to GUI."""

__version__ = "0.1.0"
