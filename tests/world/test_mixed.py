"""The mixed split: prompts that touch two tasks, their scenes, and both rewards reading them."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import flowopd
from flowopd.evaluate_mixed import mixed_metrics, mixed_rewards
from flowopd.rewards import compose_correct, text_reward
from flowopd.tokenizer import PromptTokenizer
from flowopd.training.rollout import reward_applies
from flowopd.world.detector import detect
from flowopd.world.prompts import MIXED, mixed_record, primary_task, scene_for, task_weights
from flowopd.world.scene import Scene, render
from flowopd.world.splits import load_prompts


@pytest.fixture(scope="module")
def clean() -> tuple[list[dict], list]:
    """The mixed test prompts and clean renders of scenes that satisfy them."""
    records = load_prompts(MIXED, "test")
    rng = random.Random(0)
    return records, [render(scene_for(r, rng)) for r in records]


def test_clean_mixed_renders_are_read_by_both_rewards(clean) -> None:
    records, images = clean
    prompts = [r["prompt"] for r in records]
    assert compose_correct(images, prompts, records) == [1.0] * len(records)
    assert text_reward(images, prompts, records) == [1.0] * len(records)
    assert mixed_metrics(images, records) == {"compose": 1.0, "text": 1.0, "mean": 1.0}
    assert mixed_rewards(images, records) == {"compose": 1.0, "text": 1.0}
    blank = [render(Scene())] * len(records)
    assert mixed_metrics(blank, records) == {"compose": 0.0, "text": 0.0, "mean": 0.0}


def test_a_mixed_scene_holds_the_word_and_the_objects() -> None:
    record = {"prompt": 'a sign that says "AK" and two red circles', "target": "AK",
              "include": [{"class": "circle", "count": 2, "color": "red"}],
              "exclude": [{"class": "circle", "count": 3}]}
    scene = scene_for(record, random.Random(3))
    assert scene.text == "AK" and [(o.shape, o.color) for o in scene.objects] == [("circle", "red")] * 2
    assert all(o.cy < 0.2 or o.cy > 0.8 for o in scene.objects)  # above or below the word's rows
    image = render(scene)
    assert sorted((d.shape, d.color) for d in detect(np.asarray(image))) == [("circle", "red")] * 2
    assert text_reward([image], [record["prompt"]], [record]) == [1.0]
    # The metrics take tensors too (what generation returns), and pick each task's records.
    as_tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    assert mixed_metrics(as_tensor, [dict(record, tasks={"compose": 1, "text": 1}, tag="counting")])["mean"] == 1.0


def test_mixed_records_are_deterministic_and_in_vocabulary() -> None:
    assert mixed_record("AK", random.Random(5)) == mixed_record("AK", random.Random(5))
    vocab = PromptTokenizer.load(Path(flowopd.__file__).parent / "assets" / "tiny-base" / "vocab.json").vocab
    for record in load_prompts(MIXED, "train")[:200] + load_prompts(MIXED, "test"):
        words = record["prompt"].split('"')[0].split() + record["prompt"].split('"')[2].split()
        assert set(words) <= set(vocab), record["prompt"]


def test_task_weights_and_the_one_hot_task() -> None:
    assert task_weights({"task": "mixed", "tasks": {"compose": 2, "text": 2}}) == {"compose": 0.5, "text": 0.5}
    assert task_weights({"task": "prefer"}) == {"prefer": 1.0}
    assert task_weights({"tasks": {"compose": 1, "text": 0}}) == {"compose": 1.0}
    assert primary_task({"tasks": {"text": 0.5, "compose": 0.5}}) == "compose"  # ties: the earliest in TASKS
    assert primary_task({"tasks": {"text": 0.7, "compose": 0.3}}) == "text"
    for bad in ({"compose": -1}, {}, {"compose": True}, ["compose"]):
        with pytest.raises(ValueError, match=r"tasks=.* is invalid: use a mapping of tasks to weights >= 0"):
            task_weights({"prompt": "p", "tasks": bad})
    with pytest.raises(ValueError, match="positive, finite total"):
        task_weights({"prompt": "p", "tasks": {"compose": 0}})
    with pytest.raises(ValueError, match="neither a task nor task labels"):
        task_weights({"prompt": "p"})


def test_rewards_score_mixed_prompts_by_each_of_their_tasks() -> None:
    record = load_prompts(MIXED, "train")[0]
    tasks = ["compose", "text", "prefer"]
    assert [reward_applies(t, record, tasks) for t in tasks] == [True, True, False]
    assert reward_applies("quality", record, tasks)  # not a prompt task: scores everything, as before


def test_the_world_writes_a_mixed_image_set_both_rewards_read(cli, tmp_path) -> None:
    from flowopd.datasets import load_image_set

    code, out, err = cli("world", "dataset", "--task", "mixed", "--n", "6", "--out", tmp_path / "mixed")
    assert code == 0 and "6 mixed renders" in out, err
    data = load_image_set(tmp_path / "mixed", 32)
    by_prompt = {r["prompt"]: r for r in load_prompts(MIXED, "train")}
    records = [by_prompt[c] for c in data.captions]  # captions are mixed train prompts
    images = [Image.fromarray(a) for a in data.images]
    assert mixed_rewards(images, records) == {"compose": 1.0, "text": 1.0}
