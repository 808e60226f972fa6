"""Names that cross module boundaries: feature keys, action component names, command styles, command sources.

Feature keys use lerobot's naming (``observation.state``, ``observation.images.<camera>``, ``action``)
so that a tiers dataset is a plain LeRobotDataset and lerobot policies read it unchanged. Strings are
``StrEnum`` members, so they compare equal to the literal keys lerobot uses.
"""

from __future__ import annotations

from enum import StrEnum

# components of an ``ee_delta`` action, in order: tool translation (m) and rotation vector (rad) in the base frame
# per control step, then the gripper opening target (m); the names a dataset's action column carries
EE_DELTA_NAMES = ("dx", "dy", "dz", "rx", "ry", "rz", "gripper_opening")


class FeatureKey(StrEnum):
    """Keys of dataset columns and policy batch entries (lerobot's names where lerobot has one)."""

    STATE = "observation.state"  # (S,) proprioception: joint positions then gripper opening
    ENV_STATE = "observation.environment_state"  # privileged sim state (object poses), never on a robot
    EE_POSE = "observation.ee_pose"  # (7,) end-effector xyz (m) + quaternion wxyz, base frame
    IMAGES = "observation.images"  # prefix: observation.images.<camera> -> (3, H, W) float in [0, 1]
    DEPTH = "observation.depth"  # prefix: observation.depth.<camera> -> (1, H, W) metres
    ACTION = "action"  # (A,) one action; (Ta, A) chunks in training windows
    TASK = "task"  # episode-level instruction text
    SUBTASK = "subtask"  # the subtask being executed at this frame
    LANGUAGE_MOTION = "language_motion"  # RT-H language motion at this frame ("move arm forward")
    EXPERT_MOTION = "expert_motion"  # the scripted expert's motion primitive at this frame ("grasp", "lift")
    INTERJECTION = "interjection"  # text of a live correction arriving at this frame ("" at other frames)
    ACTIVE_CORRECTION = "active_correction"  # the live correction in force at this frame ("" when none)
    TIMESTAMP = "timestamp"  # seconds since the episode start

    def camera(self, camera: str) -> str:
        """Per-camera key under an image prefix: ``FeatureKey.IMAGES.camera("front")``."""
        if self not in (FeatureKey.IMAGES, FeatureKey.DEPTH):
            raise ValueError(f"{self.value} is not a per-camera prefix")
        return f"{self.value}.{camera}"


class CommandStyle(StrEnum):
    """What kind of instruction a :class:`~tiers.core.language.LanguageCommand` is, i.e. which tier it addresses."""

    SUBTASK = "subtask"  # a step of the plan: "pick up the red cup" (mid/low tier conditioning)
    MOTION = "motion"  # an RT-H language motion: "move arm forward" (low tier conditioning)
    CORRECTION = "correction"  # a live human correction (YAY), routed to the tier it addresses
    STOP = "stop"  # freeze the robot now; cancels queued actions


class CommandSource(StrEnum):
    """Who produced a command (provenance, kept in logs and datasets)."""

    PLANNER = "planner"  # a high-tier planner (LLM, rule-based, learned)
    HUMAN_LIVE = "human_live"  # a person, during execution
    AUTO_LABEL = "auto_label"  # the language-motion labeler, from proprioception
    EXPERT = "expert"  # the scripted expert of the benchmark
    REPLAY = "replay"  # replayed from a corrections file
    SIMULATED_CORRECTOR = "simulated_corrector"  # the benchmark's privileged corrector
