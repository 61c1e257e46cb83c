"""Item-table export from an embedder folder (+ PCA)."""

from .export import export_item_table, export_item_tables, pca_path

__all__ = ["export_item_table", "export_item_tables", "pca_path"]
