"""Grad-CAM: where each window branch looked, as heatmap volumes in the series geometry."""
