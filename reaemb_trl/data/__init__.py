"""Data layer: raw readers, the prepared-dataset folder, co-occurrence, CRRL candidates, embedding-table files."""

from .candidates import Candidates, sample_candidates
from .cooccurrence import build_cooccurrence, training_popularity
from .embedding_table import embedding_table_writer, load_embedding_table, save_embedding_table
from .prepare import PrepareOptions, prepare_dataset, sample_dataset_files
from .prepared import PreparedDataset
from .readers import FORMATS
from .text import item_attributes, join_attributes

__all__ = [
    "Candidates",
    "FORMATS",
    "PrepareOptions",
    "PreparedDataset",
    "build_cooccurrence",
    "embedding_table_writer",
    "item_attributes",
    "join_attributes",
    "load_embedding_table",
    "prepare_dataset",
    "sample_candidates",
    "sample_dataset_files",
    "save_embedding_table",
    "training_popularity",
]
