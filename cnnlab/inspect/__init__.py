"""Seeing inside: convolution arithmetic, shape tables and model summaries, feature maps,
filters, Grad-CAM and saliency, gradient flow, mistakes, training curves, classic filters.

Modules: :mod:`.hooks` (layers by name, capture hooks, eval mode), :mod:`.views` (feature maps,
filters, gradient flow, mistakes), :mod:`.explain` (Grad-CAM and saliency on a CAM base),
:mod:`.plots` (every figure, drawn on ``matplotlib.figure.Figure``: importing cnnlab never
changes matplotlib's backend), :mod:`.image_filters` (classic filters on photos),
:mod:`.shapes`, :mod:`.summary` and :mod:`.arithmetic`.
"""

from .arithmetic import ShapeError, conv_output_size, pool_output_size, same_padding
from .explain import BaseCAM, Explanation, GradCAM, Saliency, grad_cam, saliency
from .hooks import capture, conv_layers, evaluating, layer_names, resolve_layer
from .plots import (
    plot_confusion,
    plot_curves,
    plot_explanation,
    plot_feature_maps,
    plot_filters,
    plot_gradient_flow,
    plot_mistakes,
    save_figure,
)
from .shapes import compare_designs, shape_table
from .summary import summary
from .views import confident_mistakes, dead_relus, feature_maps, filters, gradient_flow

__all__ = [
    "BaseCAM",
    "Explanation",
    "GradCAM",
    "Saliency",
    "ShapeError",
    "capture",
    "compare_designs",
    "confident_mistakes",
    "conv_layers",
    "conv_output_size",
    "dead_relus",
    "evaluating",
    "feature_maps",
    "filters",
    "grad_cam",
    "gradient_flow",
    "layer_names",
    "plot_confusion",
    "plot_curves",
    "plot_explanation",
    "plot_feature_maps",
    "plot_filters",
    "plot_gradient_flow",
    "plot_mistakes",
    "pool_output_size",
    "resolve_layer",
    "saliency",
    "same_padding",
    "save_figure",
    "shape_table",
    "summary",
]
