"""``tiers bench lowlevel``: what few-step sampling buys, measured side by side with lerobot's diffusion policy.

Speed figures (:func:`run_lowlevel_benchmark`; one chunk for one robot, B = 1, ``torch.no_grad``; medians):

    forward_ms                       one evaluation of BESO's denoising network (the raw network, no sampler)
    forward_mmac, image_encoder_mmac multiply-adds (millions, B = 1) of one network evaluation and of one camera
                                     image through its CNN encoder (``torch.utils.flop_counter``: convolutions and
                                     matrix products; the kitchen presets have two cameras)
    beso.sample_ms.<N>               BESO's sampler alone (tokens precomputed) with N = 1, 3, 10, 100 network
                                     evaluations of that same network (DDIM over the exponential schedule)
    beso.sampler_ratio.<N>           sampler / (N × forward): what the sampler adds; the goal is <= 1.1 (the
                                     forward, the sampler and the chunk take turns call by call, so all three
                                     see the same load: ``paired_forward_cpu_ms.<N>`` is that forward's median)
    beso.chunk_ms.<N>                a whole chunk: normalisation, observation encoders (CNNs, cached MiniLM
                                     language embedding), sampler, unnormalisation
    beso.chunk_ratio.<N>             chunk / (N × paired forward): the encoders' share shows at small N
    beso.encoder_cpu_ms.<N>          the observation encoder alone (CNN on both cameras, state, language tokens;
                                     normalised inputs), timed in turn with the same forward and chunk
    beso.chunk_over_network.<N>      chunk / (encoder + N × paired forward): what a chunk costs beyond the network
                                     compute it cannot skip (the new frame must go through the CNN once per chunk)
    *_cpu_ms                         process CPU time of the same calls: with ``--threads 1`` on a shared CPU,
                                     the latency one free core would give (wall times include waiting for it)
    flow.chunk_ms, ddpm.chunk_ms     flow matching at its default Euler steps; DDPM at its 100 steps
    onnx.chunk_ms                    the BESO policy exported at 3 evaluations (``tiers export``) and run by
                                     ONNX Runtime (the ``onnx`` low tier: numpy in, numpy out, no torch), same
                                     one-step batch, ``threads`` intra-op threads; ``speedup.torch_over_onnx``
                                     = BESO-3's torch chunk / the ONNX chunk (needs the ``export`` extra);
                                     ``onnx.control_step_ms_p50/p99``: one ``select_action`` per control tick
                                     (a chunk every ``n_action_steps`` ticks, queued actions in between)
    lerobot_diffusion.chunk_ms       lerobot's diffusion policy at lerobot's defaults (ResNet-18 per camera, UNet
                                     (512, 1024, 2048), horizon 64, DDPM 100 steps) through the adapter, same run
    speedup.ddpm100_over_beso3       DDPM-100 chunk / BESO-3 chunk (CPU times with ``--threads 1``, else walls)
    speedup.lerobot_over_beso3       lerobot_diffusion chunk / BESO-3 chunk (the issue's goal: >= 10)
    <policy>.train_samples_per_s     forward + backward + AdamW step on synthetic batches of ``train_batch``
                                     windows (model compute only; ``tiers bench data`` measures loading)
    <policy>.train_peak_rss_mb       peak resident memory of the process during that policy's training steps
                                     (Linux: the peak is reset between policies through /proc/self/clear_refs)
    <policy>.train_peak_cuda_mb      torch.cuda.max_memory_allocated during them (CUDA only)

Networks are those of the ``kitchen`` training presets (``configs/train/<policy>_kitchen.yaml``: two 96 px
cameras, subtask language) with random weights and unit statistics — latency does not depend on the values —
or the test-sized ``tiny`` presets.

Success (``--success``) is the low-tier study of :mod:`tiers.apps.bench.low_tier_study`: every low tier trained
on one recorded dataset with the same budget, run in the kitchen's control mode, resumable and spread over workers.
"""

from __future__ import annotations

import gc
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from tiers.apps.training import LerobotTrainConfig, LowPolicyTrainConfig
from tiers.core.config import Config, load_config
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError
from tiers.core.features import FeatureKey
from tiers.core.locations import preset_path
from tiers.policies.low.checkpoint import PolicyFeatures
from tiers.policies.low.export import export_onnx
from tiers.policies.low.lerobot_adapter import LerobotPolicyAdapter, window_shape
from tiers.policies.low.onnx_policy import OnnxLowPolicy
from tiers.policies.low.policy import GenerativeLowPolicy

STATE, ACTION = FeatureKey.STATE.value, FeatureKey.ACTION.value
POLICIES = ("beso", "flow", "ddpm", "lerobot_diffusion")  # what the benchmark compares, in table order
PRESETS = ("kitchen", "tiny")  # network sizes: the kitchen training presets, or test-sized ones


@dataclass
class LowLevelBenchConfig(Config):
    """What ``tiers bench lowlevel`` measures and how long it spends on each figure."""

    preset: str = "kitchen"  # network sizes: "kitchen" (configs/train/*_kitchen.yaml) | "tiny" (tests)
    device: str = "cpu"  # "cpu" | "cuda"
    evaluations: list[int] = field(default_factory=lambda: [1, 3, 10, 100])  # network evaluations per BESO chunk
    repeats: int = 20  # timed chunks per latency figure (the median is reported)
    lerobot_repeats: int = 3  # timed chunks of lerobot's default diffusion policy (slow on a CPU)
    warmup: int = 2  # untimed calls before each latency figure (allocator, kernels, cached text embedding)
    train_steps: int = 5  # timed optimiser steps per policy (after one untimed step)
    train_batch: int = 8  # windows per training step
    policies: list[str] = field(default_factory=lambda: list(POLICIES))  # which policies to measure
    threads: int | None = None  # torch CPU threads; 1 makes CPU-time figures contention-free; None: torch's
    onnx: bool = True  # also time BESO-3 exported and run by ONNX Runtime (CPU only; needs the export extra)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or null, got {self.threads}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {list(PRESETS)}, got {self.preset!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")
        if not self.evaluations or min(self.evaluations) < 1:
            raise ValueError(f"evaluations must be network-evaluation counts >= 1, got {self.evaluations}")
        for name in ("repeats", "lerobot_repeats", "train_steps", "train_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        unknown = sorted(set(self.policies) - set(POLICIES))
        if unknown or "beso" not in self.policies:
            raise ValueError(f"policies must include 'beso' and be among {list(POLICIES)}, got {self.policies}")


# -- building the policies ------------------------------------------------------------------------------------


def train_config(policy: str, preset: str, overrides: list[str] | None = None) -> Any:
    """The training run config of ``policy`` at ``preset`` size (a LowPolicyTrainConfig or LerobotTrainConfig)."""
    overrides = list(overrides or [])
    if policy == "lerobot_diffusion":
        name = "lerobot_diffusion_kitchen" if preset == "kitchen" else "lerobot_tiny"
        return load_config(LerobotTrainConfig, preset_path("train", name), overrides=overrides)
    name = f"{policy}_kitchen" if preset == "kitchen" else "tiny"
    return load_config(
        LowPolicyTrainConfig, preset_path("train", name), overrides=[f"policy.generator={policy}", *overrides]
    )


def _features(cameras: list[str], image_size: tuple[int, int], language_key: str | None) -> Any:
    panda = EmbodimentSpec.load("panda")
    names = [*panda.joint_names, "gripper_opening"]
    return PolicyFeatures(
        robot=panda.name,
        action_space=panda.action_space.value,
        fps=panda.control_rate_hz,
        state_names=names,
        action_names=names,
        cameras={FeatureKey.IMAGES.camera(camera): [3, *image_size] for camera in cameras},
        language_key=language_key,
    )


def _unit_stats(features: Any) -> dict[str, dict[str, torch.Tensor]]:
    """Statistics that leave values as they are (latency and memory do not depend on them)."""

    def entry(shape: tuple[int, ...], low: float, high: float) -> dict[str, torch.Tensor]:
        return {
            "mean": torch.full(shape, (low + high) / 2),
            "std": torch.ones(shape),
            "min": torch.full(shape, low),
            "max": torch.full(shape, high),
        }

    stats = {STATE: entry((features.state_dim,), -1.0, 1.0), ACTION: entry((features.action_dim,), -1.0, 1.0)}
    stats.update({key: entry((3, 1, 1), 0.0, 1.0) for key in features.cameras})
    return stats


def build_policy(policy: str, preset: str, device: str) -> Any:
    """A policy of the preset's architecture with random weights and unit statistics, on ``device``."""
    config = train_config(policy, preset)
    if policy == "lerobot_diffusion":
        adapter = config.policy
        size = tuple(adapter.image_size or (96, 96))
        features = _features(adapter.cameras, size, None)
        return LerobotPolicyAdapter.from_features(adapter, features, _unit_stats(features)).to(device)
    conditioning = config.policy.conditioning
    features = _features(conditioning.cameras, tuple(conditioning.image_size or (96, 96)), conditioning.language_key)
    return GenerativeLowPolicy(config.policy, features, _unit_stats(features)).to(device)


def one_step_batch(policy: Any, device: str, *, batch: int = 1, seed: int = 0) -> dict[str, Any]:
    """One observation step per sample: state (B, S), cameras (B, 3, H, W) in [0, 1], the language text."""
    generator = torch.Generator().manual_seed(seed)
    features = policy.features
    out: dict[str, Any] = {STATE: torch.randn(batch, features.state_dim, generator=generator).to(device)}
    for key, shape in features.cameras.items():
        out[key] = torch.rand(batch, *shape, generator=generator).to(device)
    if features.language_key:
        out[features.language_key] = ["open the kitchen drawer"] * batch
    return out


def _training_batch(policy: Any, size: int, device: str) -> dict[str, Any]:
    """Synthetic training windows: (B, To, S) state, (B, To, 3, H, W) cameras, (B, Ta, A) actions, no padding."""
    features = policy.features
    if isinstance(policy, LerobotPolicyAdapter):
        steps, horizon = window_shape(policy.policy.config)
    else:
        steps, horizon = policy.config.n_obs_steps, policy.config.horizon
    batch: dict[str, Any] = {
        STATE: torch.randn(size, steps, features.state_dim),
        ACTION: torch.rand(size, horizon, features.action_dim) * 2 - 1,
        f"{ACTION}_is_pad": torch.zeros(size, horizon, dtype=torch.bool),
    }
    for key, shape in features.cameras.items():
        batch[key] = torch.rand(size, steps, *shape)
    batch = {key: value.to(device) for key, value in batch.items()}
    if features.language_key:
        batch[features.language_key] = ["open the kitchen drawer"] * size
    return batch


# -- timing ---------------------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@dataclass(frozen=True)
class Timing:
    """Timings of one call, ms: median and fastest wall time, median process CPU time (all threads)."""

    median_ms: float
    best_ms: float
    cpu_ms: float


def time_call(call: Callable[[], Any], *, repeats: int, warmup: int, device: str) -> Timing:
    """Time ``call`` over ``repeats`` calls, after ``warmup`` untimed ones."""
    return time_interleaved([call], repeats=repeats, warmup=warmup, device=device)[0]


def time_interleaved(calls: Sequence[Callable[[], Any]], *, repeats: int, warmup: int, device: str) -> list[Timing]:
    """Time several calls taking turns (a, b, a, b, ...), ``repeats`` timed turns each after ``warmup`` rounds.

    For ratios between calls: on a shared machine the load drifts over seconds, so calls timed one after the
    other see different machines; taking turns gives each the same mix of quiet and busy moments.
    """
    for _ in range(warmup):
        for call in calls:
            call()
    _sync(device)
    walls: list[list[float]] = [[] for _ in calls]
    cpus: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for index, call in enumerate(calls):
            start, cpu = time.perf_counter(), time.process_time()
            call()
            _sync(device)
            walls[index].append(time.perf_counter() - start)
            cpus[index].append(time.process_time() - cpu)
    return [
        Timing(1000 * statistics.median(wall), 1000 * min(wall), 1000 * statistics.median(cpu))
        for wall, cpu in zip(walls, cpus, strict=True)
    ]


def _normalised_history(policy: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
    """A one-step batch as the encoder reads it: each step repeated To times (stride 0), normalised."""
    steps = policy.config.n_obs_steps
    normalised: dict[str, Any] = dict(batch)
    for key in (STATE, *policy.features.cameras):
        value = batch[key][:, None].expand(-1, steps, *batch[key].shape[1:])
        normalised[key] = policy.normalizer.normalize(key, value)
    return normalised


def _latencies(name: str, policy: Any, config: LowLevelBenchConfig, evaluations: list[int]) -> dict[str, float]:
    """forward / sampler / chunk latencies of a generative policy for each evaluation count."""
    device, figures = config.device, {}
    generator = policy.generator
    batch = one_step_batch(policy, device)
    action_dim, horizon = policy.features.action_dim, policy.config.horizon
    noise = torch.randn(1, horizon, action_dim, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        normalised = _normalised_history(policy, batch)
        conditioning = policy.encoder(normalised)
        tokens, level = conditioning.tokens, torch.full((1,), 0.5, device=device)
        forward = time_call(
            lambda: generator.network(noise, level, tokens), repeats=config.repeats, warmup=config.warmup, device=device
        )
        figures[f"{name}.forward_ms"] = forward.median_ms
        figures[f"{name}.forward_cpu_ms"] = forward.cpu_ms
        figures[f"{name}.forward_mmac"] = _multiply_adds(lambda: generator.network(noise, level, tokens))
        cameras = policy.encoder.config.cameras
        if cameras:  # every camera has the same encoder architecture and image size
            image_encoder = policy.encoder.image_encoder or policy.encoder.cameras[cameras[0]]
            image = batch[FeatureKey.IMAGES.camera(cameras[0])]  # (1, 3, H, W)
            figures[f"{name}.image_encoder_mmac"] = _multiply_adds(partial(image_encoder, image))
        _, basis = _ratio_basis(config)
        default_steps = policy.config.sampler_steps
        for count in evaluations:
            policy.config.sampler_steps = count
            # the ratios divide by a forward timed in turn with the sampler and the chunk (see time_interleaved)
            paired_forward, encoder, sample, chunk = time_interleaved(
                [
                    lambda: generator.network(noise, level, tokens),
                    partial(policy.encoder, normalised, null_tokens=False),
                    partial(generator.sample, conditioning, noise=noise, steps=count),
                    lambda: policy.predict_action_chunk(batch, noise=noise),
                ],
                repeats=config.repeats,
                warmup=config.warmup,
                device=device,
            )
            figures[f"{name}.sample_ms.{count}"] = sample.median_ms
            figures[f"{name}.sample_cpu_ms.{count}"] = sample.cpu_ms
            figures[f"{name}.chunk_ms.{count}"] = chunk.median_ms
            figures[f"{name}.chunk_cpu_ms.{count}"] = chunk.cpu_ms
            figures[f"{name}.paired_forward_cpu_ms.{count}"] = paired_forward.cpu_ms
            figures[f"{name}.sampler_ratio.{count}"] = basis(sample) / (count * basis(paired_forward))
            figures[f"{name}.chunk_ratio.{count}"] = basis(chunk) / (count * basis(paired_forward))
            figures[f"{name}.encoder_cpu_ms.{count}"] = encoder.cpu_ms
            network = basis(encoder) + count * basis(paired_forward)
            figures[f"{name}.chunk_over_network.{count}"] = basis(chunk) / network
        policy.config.sampler_steps = default_steps
    return figures


def _onnx_latency(policy: Any, config: LowLevelBenchConfig) -> dict[str, float]:
    """BESO exported at 3 evaluations and run by :class:`OnnxLowPolicy` on the same one-step batch (B = 1)."""
    batch = {
        key: value.numpy() if isinstance(value, torch.Tensor) else value
        for key, value in one_step_batch(policy, "cpu").items()
    }
    noise = torch.randn(1, policy.config.horizon, policy.features.action_dim).numpy()
    with tempfile.TemporaryDirectory(prefix="tiers-bench-onnx-") as folder:
        texts = [batch[key][0] for key in (policy.features.language_key,) if key]  # the bench's own command
        report = export_onnx(policy, Path(folder) / "beso.onnx", steps=3, check=False, texts=texts)
        runtime = OnnxLowPolicy(report.path, threads=config.threads)
        timing = time_call(
            partial(runtime.predict_action_chunk, batch, noise=noise),
            repeats=config.repeats,
            warmup=config.warmup,
            device="cpu",
        )
        # the control step as the hierarchy's driver sees it: select_action every tick, a chunk every
        # n_action_steps ticks (the queue in between), over `repeats` chunks
        runtime.reset()
        ticks = []
        for _ in range(config.repeats * runtime.config.n_action_steps):
            start = time.perf_counter()
            runtime.select_action(batch)
            ticks.append(time.perf_counter() - start)
    ticks_ms = sorted(1000 * tick for tick in ticks)
    return {
        "onnx.control_step_ms_p50": statistics.median(ticks_ms),
        "onnx.control_step_ms_p99": ticks_ms[min(len(ticks_ms) - 1, round(0.99 * (len(ticks_ms) - 1)))],
        "onnx.network_evaluations": 3,
        "onnx.chunk_ms": timing.median_ms,
        "onnx.chunk_cpu_ms": timing.cpu_ms,
        "onnx.chunk_best_ms": timing.best_ms,
        "onnx.graph_mb": report.size_mb,
    }


def _multiply_adds(call: Callable[[], Any]) -> float:
    """Multiply-adds of one ``call``, millions (FLOPs / 2 of its convolutions and matrix products)."""
    with FlopCounterMode(display=False) as counter:
        call()
    flops: int = counter.get_total_flops()
    return flops / 2e6


def _ratio_basis(config: LowLevelBenchConfig) -> tuple[str, Callable[[Timing], float]]:
    """Which time the ratios divide: CPU time with one CPU thread (robust to other processes on the machine),
    else the fastest wall time (GPU kernels and multi-threaded CPU work do not show in process CPU time)."""
    if config.device == "cpu" and torch.get_num_threads() == 1:
        return "cpu_time", lambda timing: timing.cpu_ms
    return "fastest_wall_time", lambda timing: timing.best_ms


def _training(name: str, policy: Any, config: LowLevelBenchConfig) -> dict[str, float]:
    """Training throughput and peak memory of ``train_steps`` AdamW steps on synthetic windows."""
    device = config.device
    batch = _training_batch(policy, config.train_batch, device)
    optimiser = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    policy.train()

    def step() -> None:
        loss, _ = policy(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    step()  # untimed: allocates the optimiser state and warms kernels
    _sync(device)
    reset = _reset_peak_rss()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(config.train_steps):
        step()
    _sync(device)
    elapsed = time.perf_counter() - start
    policy.eval()
    figures = {
        f"{name}.train_samples_per_s": config.train_steps * config.train_batch / elapsed,
        f"{name}.train_peak_rss_mb": _peak_rss_mb(),
        f"{name}.parameters_m": sum(p.numel() for p in policy.parameters()) / 1e6,
    }
    if not reset:
        figures[f"{name}.train_peak_rss_is_process_peak"] = 1.0  # the kernel would not reset the peak
    if device == "cuda":
        figures[f"{name}.train_peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return figures


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux ``clear_refs`` 5); False when the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_mb() -> float:
    """Peak resident set size since the last reset, MiB (VmHWM), or the process's lifetime peak elsewhere."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the benchmark ----------------------------------------------------------------------------------------------


def run_lowlevel_benchmark(
    config: LowLevelBenchConfig, *, progress: Callable[[str], None] | None = None
) -> dict[str, float | int | str]:
    """Measure every figure of the module docstring; returns them flat (name -> value)."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but torch sees no CUDA GPU")
    say = progress or (lambda message: None)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    figures: dict[str, float | int | str] = {
        "device": torch.cuda.get_device_name() if config.device == "cuda" else "cpu",
        "preset": config.preset,
        "torch_threads": torch.get_num_threads(),
        "ratio_basis": _ratio_basis(config)[0],
    }
    torch.manual_seed(0)
    for name in config.policies:
        say(f"{name}: building")
        policy = build_policy(name, config.preset, config.device).eval()
        say(f"{name}: latency")
        if name == "lerobot_diffusion":
            batch = one_step_batch(policy, config.device)
            timing = time_call(
                partial(policy.predict_action_chunk, batch),
                repeats=config.lerobot_repeats,
                warmup=min(config.warmup, 1),
                device=config.device,
            )
            figures[f"{name}.chunk_ms"], figures[f"{name}.chunk_cpu_ms"] = timing.median_ms, timing.cpu_ms
            lerobot = policy.policy.config
            figures[f"{name}.network_evaluations"] = int(lerobot.num_inference_steps or lerobot.num_train_timesteps)
        elif name == "beso":
            figures.update(_latencies(name, policy, config, sorted(set(config.evaluations))))
            if config.onnx and config.device == "cpu":
                say("beso: exported, under ONNX Runtime")
                figures.update(_onnx_latency(policy, config))
        else:
            steps = int(policy.config.sampler_steps or policy.generator.config.steps)
            figures[f"{name}.network_evaluations"] = steps
            measured = _latencies(name, policy, config, [steps])
            figures.update({key.removesuffix(f".{steps}"): value for key, value in measured.items()})
        say(f"{name}: training throughput")
        figures.update(_training(name, policy, config))
        del policy
        gc.collect()
        if config.device == "cuda":
            torch.cuda.empty_cache()
    # speed-ups divide the same kind of time as the ratios (CPU time with one thread, else median wall time)
    kind = "chunk_cpu_ms" if figures["ratio_basis"] == "cpu_time" else "chunk_ms"
    beso3 = figures.get(f"beso.{kind}.3")
    if isinstance(beso3, float):
        for name, key in (
            ("ddpm100", f"ddpm.{kind}"),
            ("lerobot", f"lerobot_diffusion.{kind}"),
            ("flow", f"flow.{kind}"),
        ):
            other = figures.get(key)
            if isinstance(other, float):
                figures[f"speedup.{name}_over_beso3"] = other / beso3
        onnx = figures.get(f"onnx.{kind}")
        if isinstance(onnx, float):
            figures["speedup.torch_over_onnx"] = beso3 / onnx
    return figures


def plot_latency(figures: Mapping[str, Any], path: Path) -> Path:
    """Chunk and sampler latency against network evaluations (log-log), the peers as marked points.

    Plots CPU times when the ratios were taken on them (``--threads 1``), else median wall times.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cpu = figures.get("ratio_basis") == "cpu_time"
    chunk, sample, forward = (
        ("chunk_cpu_ms", "sample_cpu_ms", "forward_cpu_ms") if cpu else ("chunk_ms", "sample_ms", "forward_ms")
    )
    counts = sorted(int(key.rsplit(".", 1)[1]) for key in figures if key.startswith(f"beso.{chunk}."))
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(counts, [figures[f"beso.{chunk}.{n}"] for n in counts], "o-", label="BESO chunk (encoders + sampler)")
    if all(f"beso.{sample}.{n}" in figures for n in counts):
        axis.plot(counts, [figures[f"beso.{sample}.{n}"] for n in counts], "s--", label="BESO sampler only")
    axis.plot(counts, [n * figures[f"beso.{forward}"] for n in counts], ":", color="gray", label="N × one forward")
    for name, marker in (("flow", "^"), ("ddpm", "v"), ("lerobot_diffusion", "*"), ("onnx", "D")):
        if f"{name}.{chunk}" in figures:
            axis.plot(
                figures[f"{name}.network_evaluations"], figures[f"{name}.{chunk}"], marker, markersize=11, label=name
            )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("network evaluations per chunk")
    axis.set_ylabel(f"{'CPU time (1 thread)' if cpu else 'latency (median)'} per chunk, ms")
    axis.set_title(f"tiers bench lowlevel ({figures.get('device')}, {figures.get('preset')} networks)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
