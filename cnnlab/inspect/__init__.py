"""Seeing inside: convolution arithmetic, shape tables and model summaries, feature maps,
filters, Grad-CAM and saliency, gradient flow, mistakes, training curves, classic filters."""

from .arithmetic import ShapeError, conv_output_size, pool_output_size, same_padding
from .plots import (
    plot_confusion,
    plot_curves,
    plot_explanation,
    plot_feature_maps,
    plot_filters,
    plot_gradient_flow,
    plot_mistakes,
)
from .shapes import compare_designs, shape_table
from .summary import summary
from .views import (
    capture,
    confident_mistakes,
    feature_maps,
    filters,
    grad_cam,
    gradient_flow,
    layer_names,
    saliency,
)

__all__ = [
    "ShapeError", "capture", "compare_designs", "confident_mistakes", "conv_output_size",
    "feature_maps", "filters", "grad_cam", "gradient_flow", "layer_names", "plot_confusion",
    "plot_curves", "plot_explanation", "plot_feature_maps", "plot_filters",
    "plot_gradient_flow", "plot_mistakes", "pool_output_size", "saliency", "same_padding",
    "shape_table", "summary",
]  # fmt: skip
