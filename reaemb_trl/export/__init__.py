"""Item-table export from an embedder folder (+ PCA), in the formats of `formats.py`; `encode` for new items or
texts, `convert_table` for a table in another format."""

from .convert import convert_table
from .export import ExportOptions, default_device, export_folders, export_item_table, export_item_tables, pca_path
from .formats import TABLE_FORMATS
from .new_items import encode, encode_table, item_file_texts
from .similarity import trained_similarity

__all__ = ["TABLE_FORMATS", "ExportOptions", "export_folders", "convert_table", "default_device", "encode",
           "encode_table", "export_item_table",
           "export_item_tables", "item_file_texts", "pca_path", "trained_similarity"]
