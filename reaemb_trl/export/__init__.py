"""Item-table export from an embedder folder (+ PCA), in the formats of `formats.py`."""

from .export import default_device, export_item_table, export_item_tables, pca_path
from .formats import FORMATS
from .similarity import trained_similarity

__all__ = ["FORMATS", "default_device", "export_item_table", "export_item_tables", "pca_path", "trained_similarity"]
