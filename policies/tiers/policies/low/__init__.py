"""tiers.policies.low: the low tier, observation + conditioning -> action chunks at control rate.

Generative cores (one module each, all behind :class:`~tiers.policies.low.generator.ActionGenerator`):
BESO score-based diffusion under EDM preconditioning, rectified flow matching, and a DDPM/DDIM baseline
through diffusers. The policy wraps a core with observation encoders, normalisation and an action queue.
"""
