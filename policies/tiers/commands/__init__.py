"""tiers.commands: the command language the tiers exchange (layer 2: imports only ``tiers.core``).

What a planner says and what the tiers below it read, independent of any simulator or robot:

- :mod:`~tiers.commands.vocabulary`: the kitchen's objects, fixtures, relations, push directions and their words;
- :mod:`~tiers.commands.subtasks`: canonical subtasks ("pick up the apple", "put the apple in the bowl"), parsed
  and printed;
- :mod:`~tiers.commands.motion_words`: RT-H language motions ("move arm forward", "close gripper");
- :mod:`~tiers.commands.phases`: the scripted expert's primitive phases (approach, grasp, lift, ...);
- :mod:`~tiers.commands.palette`: the colour words objects are painted in and perception looks for.
"""
