"""The built-in kinds of each tier (see :mod:`tiers.policies.hierarchy.registry`), registered on import.

Planners: ``grammar`` (offline rule-based, the benchmark's instruction grammar), ``llm`` (an
OpenAI-compatible chat model), ``code_as_policies`` (a chat model writes a program that drives the hierarchy
command by command, perceiving through the mid tier's point cloud), ``steering`` (SteerVLA-style: a VLM steers at
its own rate), ``motion`` (RT-H: the learned language-motion predictor), ``gold_plan`` (privileged: the task's
gold plan). The model-backed planners take the endpoint from their settings (``base_url``, ``model``,
``model_path``) or from ``TIERS_LLM_BASE_URL`` / ``TIERS_LLM_MODEL`` / ``TIERS_LLM_MODEL_PATH``. Mid tiers:
``keypoint_paths`` (keypoint affordances from RGB-D -> collision-aware paths). Low tiers: ``policy`` (a
learned checkpoint: BESO, flow, DDPM or a lerobot policy), ``onnx`` (an exported BESO / flow policy under
ONNX Runtime, no torch), ``ik_path`` (the mid tier's path through IK),
``expert`` (privileged: the scripted expert).

The privileged kinds are declared here (name, hand-offs, ``privileged``), so any YAML naming them is checked,
listed and refused on a robot by name; they read the simulator, so what builds them lives with the simulator
in :mod:`tiers.apps.evaluation.kinds`, which replaces these declarations when it is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError, EmbodimentMismatchError
from tiers.core.features import CommandStyle
from tiers.policies.hierarchy.registry import HierarchyContext, TierKind, register

SUBTASK = frozenset({CommandStyle.SUBTASK})
LANGUAGE_NEEDS = {"subtask": "subtask", "language_motion": "motion", "task": "task"}


def no_settings(kind: str, settings: dict[str, Any]) -> None:
    """Refuse settings given to a kind that takes none."""
    if settings:
        raise ConfigError(f"{kind}: takes no settings, got {sorted(settings)}")


def kitchen_backend(context: HierarchyContext, kind: str) -> Any:
    """The kitchen simulator's backend a simulation-only kind is built on, or a :class:`ConfigError`."""
    if context.env is None:
        raise ConfigError(f"{kind}: needs the kitchen simulator (run it through tiers run / tiers eval)")
    return context.env.backend


# -- planners -------------------------------------------------------------------------------------------


def _grammar(settings: dict[str, Any], context: HierarchyContext) -> Any:
    from tiers.policies.high.grammar_planner import GrammarPlanner

    no_settings("grammar", settings)
    return GrammarPlanner()


def _llm(settings: dict[str, Any], context: HierarchyContext) -> Any:
    from tiers.policies.high.llm_planner import LLMPlanner, LLMPlannerConfig

    options = dict(settings)
    backend = _endpoint(options)
    return LLMPlanner(backend, LLMPlannerConfig.from_dict(options, source="planner.settings"))


def _endpoint(options: dict[str, Any]) -> Any:
    """The chat backend the planner settings name (``base_url``, ``model``, ``model_path``, popped) or the env names."""
    from tiers.services.chat import make_backend

    endpoint = {key: options.pop(key) for key in ("base_url", "model", "model_path") if key in options}
    return make_backend(**endpoint)


def _code_as_policies(settings: dict[str, Any], context: HierarchyContext) -> Any:
    from tiers.policies.hierarchy.planner_perception import mid_tier_perception
    from tiers.policies.high.code_as_policies import ClosedLoopCodeAsPolicies, CodeAsPoliciesConfig

    options = dict(settings)
    backend = _endpoint(options)
    config = CodeAsPoliciesConfig.from_dict(options, source="planner.settings")
    perception = mid_tier_perception(context.mid, "code_as_policies")
    return ClosedLoopCodeAsPolicies(backend, config, perception=perception)


def _steering(settings: dict[str, Any], context: HierarchyContext) -> Any:
    from tiers.policies.high.steering import SteeringConfig, SteeringPlanner

    options = dict(settings)
    backend = _endpoint(options)
    return SteeringPlanner(backend, SteeringConfig.from_dict(options, source="planner.settings"))


def _steering_emits(settings: dict[str, Any]) -> frozenset[CommandStyle]:
    levels = settings.get("levels", ("subtask", "motion"))
    styles = {"subtask": CommandStyle.SUBTASK, "motion": CommandStyle.MOTION}
    unknown = sorted(set(levels) - set(styles))
    if unknown or not levels:
        raise ConfigError(f"planner.settings.levels: a non-empty subset of [subtask, motion], got {list(levels)}")
    return frozenset(styles[level] for level in levels)


def _motion(settings: dict[str, Any], context: HierarchyContext) -> Any:
    from tiers.policies.high.motion_predictor import MotionPredictor

    options = dict(settings)
    if "checkpoint" not in options:
        raise ConfigError(
            "planner.settings.checkpoint: the motion predictor's folder (tiers train --policy motion) is required"
        )
    folder = context.resolve(options.pop("checkpoint"))
    period = float(options.pop("period_s", 0.5))
    if options:
        raise ConfigError(f"planner.settings: unknown keys {sorted(options)} (checkpoint, period_s)")
    return MotionPredictor.load(folder, device=context.device, period_s=period)


def _simulation_only(kind: str) -> Callable[[dict[str, Any], HierarchyContext], Any]:
    """The builder of a privileged kind until :mod:`tiers.apps.evaluation.kinds` registers the real one."""

    def refuse(settings: dict[str, Any], context: HierarchyContext) -> Any:
        raise ConfigError(
            f"{kind}: needs the kitchen simulator: it reads the simulator's ground truth (privileged; built by "
            "tiers.apps.evaluation.kinds for tiers run / tiers eval)"
        )

    return refuse


register(TierKind("grammar", "planner", _grammar, "offline rule-based planner for the kitchen grammar", emits=SUBTASK))
register(TierKind("llm", "planner", _llm, "LLM planner through an OpenAI-compatible endpoint", emits=SUBTASK))
register(
    TierKind(
        "code_as_policies",
        "planner",
        _code_as_policies,
        "Code as Policies: an LLM's program (sandboxed) drives the tiers, perceiving through the mid tier's cloud",
        emits=SUBTASK,
    )
)
register(
    TierKind(
        "steering",
        "planner",
        _steering,
        "SteerVLA-style steering: a VLM at its own rate emits subtask and/or motion commands",
        emits=frozenset({CommandStyle.SUBTASK, CommandStyle.MOTION}),
        emits_of=_steering_emits,
    )
)
register(
    TierKind(
        "motion",
        "planner",
        _motion,
        "RT-H language motions from the learned predictor (needs a motion-conditioned low tier)",
        emits=frozenset({CommandStyle.MOTION}),
    )
)
register(
    TierKind(
        "gold_plan",
        "planner",
        _simulation_only("gold_plan"),
        "the task's gold plan (privileged)",
        emits=SUBTASK,
        privileged=True,
    )
)

# -- mid tiers ------------------------------------------------------------------------------------------


def _keypoint_paths(settings: dict[str, Any], context: HierarchyContext) -> Any:
    from tiers.policies.mid.planner import KeypointPathPlanner, MidPlannerConfig

    config = MidPlannerConfig.from_dict(settings, source="mid.settings")
    return KeypointPathPlanner.for_kitchen(kitchen_backend(context, "keypoint_paths"), config)


def _perception_cameras(spec: EmbodimentSpec, settings: dict[str, Any]) -> EmbodimentSpec:
    from tiers.policies.mid.perception import perception_embodiment

    return perception_embodiment(spec)


register(
    TierKind(
        "keypoint_paths",
        "mid",
        _keypoint_paths,
        "keypoint affordances from RGB-D -> collision-aware end-effector paths",
        provides=frozenset({"path", "guidance"}),
        adapt_embodiment=_perception_cameras,
    )
)

# -- low tiers ------------------------------------------------------------------------------------------


def _policy(settings: dict[str, Any], context: HierarchyContext) -> Any:
    from tiers.policies.hierarchy.drivers import PolicyDriver
    from tiers.policies.low.checkpoint import load_policy

    options = dict(settings)
    if "checkpoint" not in options:
        raise ConfigError("low.settings.checkpoint: the checkpoint folder of the policy is required")
    checkpoint = context.resolve(options.pop("checkpoint"))
    budget = float(options.pop("command_budget_s", 15.0))
    sampler_steps = options.pop("sampler_steps", None)
    steering = options.pop("steering", None)  # fields of SteeringConfig: Feynman-Kac steering of every chunk
    if options:
        raise ConfigError(
            f"low.settings: unknown keys {sorted(options)} (checkpoint, command_budget_s, sampler_steps, steering)"
        )
    policy = load_policy(checkpoint, embodiment=context.embodiment, device=context.device)
    if sampler_steps is not None:
        policy.config.sampler_steps = int(sampler_steps)
    if steering is not None:
        from tiers.policies.mid.steering import FeynmanKacLowPolicy, SteeringConfig

        policy = FeynmanKacLowPolicy(policy, SteeringConfig.from_dict(steering, source="low.settings.steering"))
    return PolicyDriver(policy, control_rate_hz=context.embodiment.control_rate_hz, command_budget_s=budget)


def _policy_needs(settings: dict[str, Any], context: HierarchyContext) -> tuple[frozenset[str], bool]:
    """What a checkpoint conditions on, from its config.json (no weights are read)."""
    if "checkpoint" not in settings:
        raise ConfigError("low.settings.checkpoint: the checkpoint folder of the policy is required")
    folder = context.resolve(settings["checkpoint"])
    if (folder / "tiers_lerobot.json").is_file():
        return frozenset({"task"}), False  # lerobot policies read the task text, take no guidance
    from tiers.policies.low.checkpoint import read_checkpoint

    meta, _, _ = read_checkpoint(folder)
    conditioning = meta.get("config", {}).get("conditioning", {})
    needs = set()
    language = conditioning.get("language_key")
    if language in LANGUAGE_NEEDS:
        needs.add(LANGUAGE_NEEDS[language])
    if conditioning.get("path_waypoints", 0):
        needs.add("path")
    return frozenset(needs), True


def _onnx(settings: dict[str, Any], context: HierarchyContext) -> Any:
    """An exported policy (``tiers export``) under ONNX Runtime; imports no torch (see low/onnx_policy.py)."""
    from tiers.policies.hierarchy.drivers import PolicyDriver
    from tiers.policies.low.onnx_policy import OnnxLowPolicy

    options = dict(settings)
    model = _onnx_model(options.pop("model", None), context)
    budget = float(options.pop("command_budget_s", 15.0))
    threads = options.pop("threads", None)
    if options:
        raise ConfigError(f"low.settings: unknown keys {sorted(options)} (model, command_budget_s, threads)")
    policy = OnnxLowPolicy(model, threads=None if threads is None else int(threads))
    _check_onnx_embodiment(policy.features, context.embodiment, model)
    return PolicyDriver(policy, control_rate_hz=context.embodiment.control_rate_hz, command_budget_s=budget)


def _onnx_model(model: Any, context: HierarchyContext) -> Any:
    if model is None:
        raise ConfigError("low.settings.model: the exported .onnx file (tiers export CKPT --out FILE.onnx) is required")
    path = context.resolve(model)
    if not path.is_file():
        raise ConfigError(f"low.settings.model: {path} does not exist (write it with tiers export CKPT --out {model})")
    return path


def _check_onnx_embodiment(features: Any, spec: EmbodimentSpec, model: Any) -> None:
    """Refuse an export made for another robot, action space, control rate or state/action size."""
    problems = []
    if features.robot != spec.name:
        problems.append(f"robot {features.robot!r} (this robot: {spec.name!r})")
    if features.action_space != spec.action_space.value:
        problems.append(f"action space {features.action_space!r} (this robot: {spec.action_space.value!r})")
    if abs(features.fps - spec.control_rate_hz) > 1e-6:
        problems.append(f"control rate {features.fps} Hz (this robot: {spec.control_rate_hz} Hz)")
    if problems:
        raise EmbodimentMismatchError(f"{model} was exported for another embodiment: {'; '.join(problems)}")


def _onnx_needs(settings: dict[str, Any], context: HierarchyContext) -> tuple[frozenset[str], bool]:
    """What an export conditions on, from its JSON sidecar (the graph is not loaded); it takes no guidance."""
    from tiers.policies.low.onnx_policy import read_sidecar

    meta = read_sidecar(_onnx_model(settings.get("model"), context))
    needs = set()
    if meta.get("language_key") in LANGUAGE_NEEDS:
        needs.add(LANGUAGE_NEEDS[meta["language_key"]])
    if "ee_path" in meta.get("inputs", {}):
        needs.add("path")
    return frozenset(needs), False


def _ik_path(settings: dict[str, Any], context: HierarchyContext) -> Any:
    from tiers.policies.hierarchy.drivers import PathFollowerDriver
    from tiers.policies.mid.execution import FollowerConfig, PathFollower
    from tiers.services.kinematics import ArmKinematics

    spec = context.embodiment
    kinematics = ArmKinematics.for_robot(spec)
    config = FollowerConfig.from_dict(settings, source="low.settings")
    return PathFollowerDriver(PathFollower(kinematics, spec, config))


register(
    TierKind(
        "policy",
        "low",
        _policy,
        "a learned low tier from a checkpoint (BESO, flow, DDPM, lerobot)",
        needs=None,
        needs_of=_policy_needs,
    )
)
register(
    TierKind(
        "onnx",
        "low",
        _onnx,
        "an exported BESO / flow policy (tiers export) under ONNX Runtime, without torch",
        needs=None,
        needs_of=_onnx_needs,
    )
)
register(TierKind("ik_path", "low", _ik_path, "follows the mid tier's path through IK", needs=frozenset({"path"})))
register(
    TierKind(
        "expert",
        "low",
        _simulation_only("expert"),
        "the scripted expert (privileged)",
        needs=frozenset({"subtask"}),
        privileged=True,
    )
)
