"""Data in: the validated dataset (manifest, labels, the paper's subsets), image decoding, fetching."""

from featx.data.dataset import (
    PAPER_SUBSETS,
    SUBSETS,
    Dataset,
    dataset_from_paths,
    default_data_dir,
    load_dataset,
)

__all__ = ["PAPER_SUBSETS", "SUBSETS", "Dataset", "dataset_from_paths", "default_data_dir", "load_dataset"]
