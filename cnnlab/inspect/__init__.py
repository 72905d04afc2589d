"""Seeing inside: training curves and confusion matrices (more views arrive with later issues)."""

from .plots import plot_confusion, plot_curves

__all__ = ["plot_confusion", "plot_curves"]
