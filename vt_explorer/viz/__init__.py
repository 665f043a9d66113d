"""Arrays -> figures (no model calls, no Streamlit): Plotly for the app, matplotlib/PNG for files.

The app and the CLI call the same functions, so what a user exports equals what they saw.
"""

from .figures import (
    attention_heatmap,
    confusion_heatmap,
    curves_figure,
    deletion_plot,
    group_image,
    overlay,
    palette,
    predictions_bar,
    token_class_heatmap,
    token_grid_png,
    token_strip,
)

__all__ = [
    "attention_heatmap",
    "confusion_heatmap",
    "curves_figure",
    "deletion_plot",
    "group_image",
    "overlay",
    "palette",
    "predictions_bar",
    "token_class_heatmap",
    "token_grid_png",
    "token_strip",
]
