"""The offline MiniLM text encoder gives real, cached, semantically ordered embeddings."""

from __future__ import annotations

import torch

from tiers.services.text_encoder import EMBEDDING_DIM, TextEncoder


def test_embeddings_are_unit_vectors_that_rank_paraphrases_closest() -> None:
    encoder = TextEncoder()
    vectors = encoder(["open the drawer", "pull the drawer open", "put the apple in the bowl"])
    assert vectors.shape == (3, EMBEDDING_DIM) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-4)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2  # a paraphrase is closer than another task
    again = encoder(["put the apple in the bowl", "open the drawer"])  # served from the cache
    assert torch.equal(again, vectors[[2, 0]])
    assert encoder([]).shape == (0, EMBEDDING_DIM)
