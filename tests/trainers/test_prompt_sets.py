"""Your own prompts (prompt_sets, flowopd.world.prompt_sets): a folder in Flow-GRPO's layout trains and evaluates a
teacher on the tiny model and on the tiny random SD3 pipeline, its metadata reaches the reward, the world's splits
are back after the run, and a set that cannot be read is refused naming prompt_sets and the fix."""

from __future__ import annotations

import json

import pytest

from flowopd.rewards import REWARDS, register_reward
from flowopd.world.splits import load_prompts, use_prompt_sets

TRAIN = [{"prompt": 'a neon sign that says "cafe"', "target": "cafe", "source": "ocr-train"},
         {"prompt": 'a book cover with the title "moon"', "source": "ocr-train"}]
TEST = [{"prompt": 'a t-shirt printed with "tide"', "source": "ocr-test"}]


@pytest.fixture
def ocr_set(tmp_path):
    folder = tmp_path / "ocr"
    folder.mkdir()
    for split, rows in (("train", TRAIN), ("test", TEST)):
        (folder / f"{split}_metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture
def spy_reward():
    seen: list[tuple[str, dict]] = []

    def reward(images, prompts, metadata):
        seen.extend(zip(prompts, metadata))
        return [0.1 * (i % 3) for i in range(len(prompts))]

    from flowopd.reward_names import REWARD_NAMES

    register_reward("spy", reward)
    yield seen
    REWARDS.pop("spy", None)
    REWARD_NAMES.remove("spy")


def _train_and_evaluate(model, grpo_config, folder, tmp_path, seen):
    from flowopd.config.eval import EvalConfig
    from flowopd.evaluate import evaluate
    from flowopd.methods.grpo.trainer import train_grpo

    cfg = grpo_config(rewards={"spy": 1.0}, prompt_tasks={"text": 1.0}, prompt_sets={"text": str(folder)})
    result = train_grpo(model, cfg, tmp_path / "run")
    assert result.step == cfg.total_steps()
    assert {p for p, _ in seen} <= {r["prompt"] for r in TRAIN} and seen  # the rollouts drew the set's prompts
    assert all(m["source"] == "ocr-train" and m["task"] == "text" for _, m in seen)  # with their metadata
    assert load_prompts("text", "train")[0]["prompt"] not in {r["prompt"] for r in TRAIN}  # the world's again
    evaluated, seen[:] = [], []
    previous = use_prompt_sets({"text": folder})
    try:
        out = evaluate(model, EvalConfig(tasks=["text"], num_steps=2, batch_size=4, task_rewards={"text": "spy"}),
                       on_images=lambda task, records, images: evaluated.extend(records))
        default = evaluate(model, EvalConfig(tasks=["text"], num_steps=1, batch_size=4))  # the model's reward
    finally:
        use_prompt_sets(previous)
    assert [r["prompt"] for r in evaluated] == [TEST[0]["prompt"]] and out["metrics"]["text"] == 0.0
    assert [m["source"] for _, m in seen] == ["ocr-test"]  # the evaluation's reward got the set's metadata
    assert out["protocol"]["task_rewards"] == {"text": "spy"}
    return default["protocol"]["task_rewards"]


def test_a_flow_grpo_layout_set_trains_and_evaluates_on_the_tiny_model(tiny, grpo_config, ocr_set, spy_reward,
                                                                       tmp_path) -> None:
    assert _train_and_evaluate(tiny(), grpo_config, ocr_set, tmp_path, spy_reward) == {"text": "text"}


def test_a_flow_grpo_layout_set_trains_and_evaluates_on_a_tiny_sd3_pipeline(grpo_config, ocr_set, spy_reward,
                                                                            tmp_path) -> None:
    from flowopd.models.sd3 import SD3FlowModel
    from flowopd.testing import tiny_random_pipeline

    sd3 = SD3FlowModel(tiny_random_pipeline(seed=0), image_size=32, max_sequence_length=16)
    # real images are scored by the paper's reward of the task: OCR for text
    assert _train_and_evaluate(sd3, grpo_config, ocr_set, tmp_path, spy_reward) == {"text": "ocr"}


def test_plain_text_files_are_a_set_too(tmp_path) -> None:
    (tmp_path / "train.txt").write_text('a sign that says "hi"\n\nstreet art with "ok"\n')
    (tmp_path / "test.txt").write_text('a mug with "yo"\n')
    previous = use_prompt_sets({"text": tmp_path})
    try:
        assert [r["prompt"] for r in load_prompts("text", "train")] == ['a sign that says "hi"', 'street art with "ok"']
    finally:
        use_prompt_sets(previous)


@pytest.mark.parametrize(("files", "message"), [
    (None, r"prompt_sets\['text'\]: folder .* does not exist: give a folder with train.txt and test.txt"),
    ({}, r"has neither train_metadata.jsonl nor train.txt"),
    ({"train.txt": "\n\n", "test.txt": '"a"'}, r"train.txt has no prompts: write one per line"),
    ({"train_metadata.jsonl": "{bad json\n", "test.txt": '"a"'}, r"train_metadata.jsonl:1: not valid JSON"),
    ({"train.txt": "a sign with no quotes\n", "test.txt": '"a"'},
     r"prompt 1 of the train split .* has no text to draw"),
])
def test_a_set_that_cannot_be_read_names_prompt_sets_and_the_fix(grpo_config, tmp_path, files, message) -> None:
    folder = tmp_path / "set"
    if files is not None:
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        grpo_config(prompt_tasks={"text": 1.0}, prompt_sets={"text": str(folder)})
