"""Every random draw of an evaluation episode, derived from the episode's seed.

An episode's seed picks its initial scene (the simulator's ``reset(seed=...)``) and, through
:func:`stream_seed`, one independent stream per consumer, so an episode gives the same result whatever ran
before it in the same worker, however many workers there are and whichever backend runs them:

    ===============  ==================================================================================
    stream           consumer
    ===============  ==================================================================================
    low              the low tier's sampler noise (its ``seed()``: a ``torch.Generator`` of its own)
    mid              the mid tier's RANSAC and RRT-Connect (its ``seed()``: a fresh generator per plan)
    planner          a high tier that samples (its ``seed()``, when it has one)
    torch            torch's global generator (anything drawing without a generator of its own)
    numpy, python    numpy's and Python's global generators (the same, for libraries that use them)
    injection        the corrections injected at random times (:mod:`tiers.apps.evaluation.injection`)
    ===============  ==================================================================================

The simulated corrector draws nothing (it reacts to the privileged state on the simulated clock). Tiers are
seeded before the hierarchy is reset, because the reset already plans the first command.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch
from numpy.typing import NDArray

# appended streams keep the earlier ones' seeds (a stream's seed is keyed by its index)
STREAMS = ("low", "mid", "planner", "torch", "numpy", "python", "injection")


def stream_seed(seed: int, stream: str) -> int:
    """A 32-bit seed for ``stream`` (a name in :data:`STREAMS`) of the episode seeded ``seed``."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; streams: {', '.join(STREAMS)}")
    sequence = np.random.SeedSequence(int(seed), spawn_key=(STREAMS.index(stream),))
    return int(sequence.generate_state(1)[0])


def seed_globals(seed: int) -> None:
    """Seed torch's (CPU and CUDA), numpy's and Python's global generators from the episode seed ``seed``."""
    torch.manual_seed(stream_seed(seed, "torch"))
    np.random.seed(stream_seed(seed, "numpy"))
    random.seed(stream_seed(seed, "python"))


def seed_tiers(seed: int, *, planner: object = None, mid: object = None, low: object = None) -> None:
    """Seed each tier that offers ``seed(int)`` with its own stream of the episode seed ``seed``, and the globals."""
    seed_globals(seed)
    for stream, tier in (("planner", planner), ("mid", mid), ("low", low)):
        seed_tier = getattr(tier, "seed", None)
        if callable(seed_tier):
            seed_tier(stream_seed(seed, stream))


def state_digest(*arrays: NDArray[np.floating]) -> str:
    """A short hex fingerprint of an episode's final state (joint positions, tool pose): two runs that replay
    the same episode give the same digest; one step taken differently almost surely changes it."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]
