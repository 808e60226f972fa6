"""tiers.services: services shared by the tiers, the world and the applications (layer 2: core and commands only).

- :mod:`~tiers.services.chat`: OpenAI-compatible chat client (and a local transformers backend) for LLM/VLM tiers;
- :mod:`~tiers.services.sandbox`: runs model-written code in a locked-down child process;
- :mod:`~tiers.services.text_encoder`: the offline MiniLM sentence encoder for language conditioning;
- :mod:`~tiers.services.kinematics`: arm FK/IK on the MJCF the robot's YAML names (``robot_model_path``);
- :mod:`~tiers.services.training`: the one training loop every learned tier trains on;
- :mod:`~tiers.services.video`: rollout videos (H.264 through PyAV).
"""
