"""Item-table export from an embedder folder (+ PCA)."""

from .export import export_item_table, pca_path

__all__ = ["export_item_table", "pca_path"]
