"""tiers.policies.high: the high tier, an instruction and what the robot sees -> the next thing to do.

Modules (imported on use; this package imports nothing heavy):

- :mod:`~tiers.services.sandbox`: :func:`~tiers.services.sandbox.run_sandboxed`, the sandbox that runs
  language-model programs against a primitive API in a child process;
- :mod:`~tiers.services.chat`: chat backends (OpenAI-compatible HTTP, local transformers) and the
  response cache;
- :mod:`~tiers.apps.scripted_server`: a real local chat-completions server with scripted replies;
- :mod:`~tiers.policies.high.grammar_planner`: the rule-based planner for the kitchen's instruction grammar;
- :mod:`~tiers.policies.high.llm_planner`: a language model writes the subtask plan;
- :mod:`~tiers.policies.high.primitives`, :mod:`~tiers.policies.high.code_as_policies`: Code as Policies;
- :mod:`~tiers.policies.high.steering`: SteerVLA-style steering instructions from a VLM;
- :mod:`~tiers.policies.high.safety`: the motion check every primitive motion goes through;
- :mod:`~tiers.apps.bench.planner`: ``tiers bench planner``.
"""
