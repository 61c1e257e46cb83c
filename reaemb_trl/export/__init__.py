"""Item-table export from an embedder folder (+ PCA), in the formats of `formats.py`; `encode` for new items or
texts, `convert_table` for a table in another format."""

from .convert import convert_table
from .export import default_device, export_item_table, export_item_tables, pca_path
from .formats import FORMATS
from .new_items import encode, encode_table, item_file_texts
from .similarity import trained_similarity

__all__ = ["FORMATS", "convert_table", "default_device", "encode", "encode_table", "export_item_table",
           "export_item_tables", "item_file_texts", "pca_path", "trained_similarity"]
