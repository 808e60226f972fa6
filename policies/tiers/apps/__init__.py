"""tiers.apps: the applications built on the library (layer 7; only the CLI imports them).

- :mod:`~tiers.apps.evaluation`: Kitchen-R's evaluation modes (planner, control, integrated, corrections),
  reports and videos;
- :mod:`~tiers.apps.bench`: every ``tiers bench`` benchmark (sim, data, lowlevel, planner, steering, shifts, ros);
- :mod:`~tiers.apps.record`: scripted-expert rollouts into a LeRobotDataset;
- training orchestration (``tiers train``): :mod:`~tiers.apps.training` (low-tier policies) and
  :mod:`~tiers.apps.motion_predictor_training` (the RT-H motion predictor), both on the one loop in
  :mod:`tiers.services.training`; :mod:`~tiers.apps.improve` (``tiers improve``),
  :mod:`~tiers.apps.demo` (``tiers demo``), :mod:`~tiers.apps.scripted_server` (a real local chat server with
  scripted replies, for plumbing checks and tests).
"""
