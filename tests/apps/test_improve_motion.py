"""``tiers improve --motion``: retraining the RT-H predictor on logged interventions moves it toward the corrected
phrase where the person corrected it, and keeps what it knew elsewhere (a small fixed scenario, CPU, one thread)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tiers.apps.improve_motion import (
    MotionImproveConfig,
    append_interventions,
    corrections_of,
    intervention_frames,
    read_interventions,
    retrain_on_interventions,
)
from tiers.apps.motion_predictor_training import MotionFrames, _predict, embed_texts
from tiers.core.errors import ContractError
from tiers.policies.high.motion_predictor import MotionClassifier, MotionIntervention, MotionPredictorConfig
from tiers.services.text_encoder import TextEncoder

TASK = "open the kitchen drawer"
SUBTASK = "open the drawer"
STATE_DIM = 15
BASE_PHRASE = "move arm down"
CORRECTED = "move arm left"


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def base_frames(count: int = 256) -> MotionFrames:
    """Frames of the original data: states around 0, every label ``BASE_PHRASE``."""
    generator = torch.Generator().manual_seed(1)
    vocabulary = MotionPredictorConfig().vocabulary
    return MotionFrames(
        images=torch.zeros(count, 0, 1, 1, dtype=torch.uint8),
        states=torch.randn(count, STATE_DIM, generator=generator),
        tasks=torch.zeros(count, dtype=torch.long),
        labels=torch.full((count,), vocabulary.index(BASE_PHRASE)),
        episodes=torch.arange(count) // 32,
        task_texts=[TASK],
        subtasks=torch.zeros(count, dtype=torch.long),
        elapsed=torch.rand(count, generator=generator) * 4.0,
        remaining=torch.full((count,), 5.0),
        subtask_texts=[SUBTASK],
    )


def interventions() -> list[MotionIntervention]:
    """Two corrections of four queries each, in a corner of the state space the original data never visits."""
    items = []
    for number, said_at in enumerate((2.0, 7.0)):
        for query in range(4):
            state = [4.0 + 0.1 * query] * STATE_DIM
            items.append(
                MotionIntervention(
                    timestamp=said_at + 0.5 * query,
                    corrected=CORRECTED,
                    predicted=BASE_PHRASE,
                    replaced=BASE_PHRASE,
                    source="simulated_corrector",
                    corrected_at=said_at,
                    said="move left",
                    instruction=TASK,
                    subtask=SUBTASK,
                    elapsed=1.0 + number + 0.5 * query,
                    state=state,
                    state_keys=["observation.state", "observation.ee_pose"],
                )
            )
    return items


def test_retraining_on_interventions_moves_the_predictor_to_the_corrected_phrase(
    tmp_path: Path, encoder: TextEncoder
) -> None:
    torch.manual_seed(0)
    config = MotionPredictorConfig(hidden=64, state_width=32, text_width=16, dropout=0.0)
    model = MotionClassifier(config, STATE_DIM)
    base = base_frames()
    logged = interventions()
    path = append_interventions(tmp_path / "log", logged)
    assert read_interventions(path.parent) == logged and len(corrections_of(logged)) == 2

    corrected = intervention_frames(logged, model)
    rows = torch.arange(len(logged))
    vocabulary = config.vocabulary

    def corrected_probability(classifier: MotionClassifier) -> float:
        texts = embed_texts(corrected, encoder)
        batch = {
            "state": corrected.states,
            "text": texts["tasks"][corrected.tasks],
            "subtask": texts["subtasks"][corrected.subtasks],
            "elapsed": corrected.elapsed,
        }
        with torch.no_grad():
            logits, _ = classifier.eval()(
                batch["state"], batch["text"], subtasks=batch["subtask"], elapsed=batch["elapsed"]
            )
        return float(logits.softmax(-1)[:, vocabulary.index(CORRECTED)].mean())

    before = corrected_probability(model)
    improve = MotionImproveConfig(steps=120, lr=1e-3, fraction=0.25)
    tuned = retrain_on_interventions(model, logged, tmp_path / "tuned", base=base, config=improve, encoder=encoder)
    after = corrected_probability(tuned)
    assert after > before + 0.5, (before, after)
    predicted = _predict(tuned, corrected, rows, embed_texts(corrected, encoder))
    assert (predicted == vocabulary.index(CORRECTED)).float().mean() >= 0.75
    # elsewhere it still says what the original data says
    kept = _predict(tuned, base, torch.arange(64), embed_texts(base, encoder))
    assert (kept == vocabulary.index(BASE_PHRASE)).float().mean() >= 0.9
    assert (tmp_path / "tuned" / "model.safetensors").is_file()


def test_interventions_must_fit_the_predictor() -> None:
    model = MotionClassifier(MotionPredictorConfig(hidden=32), STATE_DIM)
    wrong = interventions()[0]
    with pytest.raises(ContractError, match="state has 3 values"):
        intervention_frames([MotionIntervention(**{**wrong.to_dict(), "state": [0.0, 0.0, 0.0]})], model)
    with pytest.raises(ContractError, match="not in the predictor's vocabulary"):
        intervention_frames([MotionIntervention(**{**wrong.to_dict(), "corrected": "dance"})], model)
