"""tiers.policies.high: the high tier, an instruction and what the robot sees -> the next thing to do.

Modules (imported on use; this package imports nothing heavy):

- :mod:`~tiers.policies.high.grammar_planner`: the rule-based planner for the kitchen's instruction grammar;
- :mod:`~tiers.policies.high.llm_planner`: a language model writes the subtask plan;
- :mod:`~tiers.policies.high.code_as_policies`: Code as Policies (prompt library, programs, helper generation);
- :mod:`~tiers.policies.high.primitives`: the primitive API's contract, perception from an observation and
  planning without moving (the kitchen binding is :mod:`tiers.apps.evaluation.kitchen_primitives`);
- :mod:`~tiers.policies.high.steering`: SteerVLA-style steering instructions from a VLM;
- :mod:`~tiers.policies.high.safety`: the motion check every primitive motion goes through;
- :mod:`~tiers.policies.high.motion_predictor`: the learned RT-H language-motion predictor.

What they use from below: chat backends (:mod:`tiers.services.chat`) and the sandbox that runs language-model
programs (:mod:`tiers.services.sandbox`). Served and measured from above: :mod:`tiers.apps.scripted_server` (a
local chat server with scripted replies), :mod:`tiers.apps.bench.planner` (``tiers bench planner``).
"""
