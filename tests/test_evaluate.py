"""The evaluation protocol: report schema, metric ranges, config validation, and the metrics themselves."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from flowopd.evaluate import EvalConfig, evaluate, task_metric
from flowopd.world.detector import detect, judge
from flowopd.world.prompts import COMPOSE_TAGS
from flowopd.world.splits import load_prompts


def test_evaluate_schema_and_ranges(small_model) -> None:
    seen: dict[str, tuple[int, tuple]] = {}
    cfg = EvalConfig(num_steps=2, tasks=["compose", "prefer"])
    report = evaluate(small_model, cfg, model_name="small",
                      on_images=lambda task, records, images: seen.update({task: (len(records), tuple(images.shape))}))
    assert set(report) == {"model", "protocol", "metrics", "average"}
    assert report["model"] == "small"
    assert report["protocol"] == {**asdict(cfg), "guidance": 3.0,  # the scale and the rewards used
                                  "task_rewards": {"compose": "compose", "prefer": "prefer"}}
    assert set(report["metrics"]) == {"compose", "prefer"}
    assert all(0.0 <= m <= 1.0 for m in report["metrics"].values())
    assert report["average"] == pytest.approx(sum(report["metrics"].values()) / 2)
    assert seen == {"compose": (96, (96, 3, 32, 32)), "prefer": (48, (48, 3, 32, 32))}


def test_evaluate_is_deterministic(small_model) -> None:
    cfg = EvalConfig(num_steps=1, tasks=["prefer"])
    assert evaluate(small_model, cfg)["metrics"] == evaluate(small_model, cfg)["metrics"]


@pytest.mark.parametrize("kwargs, message", [
    ({"tasks": ["compose", "painting"]}, "painting"),
    ({"num_steps": 0}, "num_steps=0 is invalid: use a whole number from 1 to 1000"),
    ({"num_steps": 1001}, "num_steps"),
    ({"images_per_prompt": 0}, "images_per_prompt"),
    ({"task_rewards": {"text": "nope"}}, "task_rewards=.*nope"),
    ({"task_rewards": {"painting": "ocr"}}, "task_rewards=.*'painting' is not a task"),
])
def test_eval_config_rejects(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EvalConfig(**kwargs)


def _category_accuracy(images, records) -> float:
    """Independent reference: per-image strict correctness, averaged per category, then over categories."""
    by_tag: dict[str, list[bool]] = {}
    for image, record in zip(images, records):
        by_tag.setdefault(record["tag"], []).append(judge(detect(np.asarray(image)), record)[0])
    return float(np.mean([np.mean(v) for v in by_tag.values()]))


def test_compose_metric_is_strict_accuracy_averaged_over_categories(render_records, blank_image) -> None:
    records = load_prompts("compose", "test")
    clean = render_records(records)
    assert task_metric("compose", clean, records) == pytest.approx(_category_accuracy(clean, records))
    assert task_metric("compose", clean, records) >= 0.97  # a perfect generator (the detector is ~99% exact)
    assert task_metric("compose", [blank_image] * len(records), records) == 0.0
    # Clean images for the first category only: at most one category of six is right.
    first = [im if r["tag"] == COMPOSE_TAGS[0] else blank_image for im, r in zip(clean, records)]
    assert task_metric("compose", first, records) == pytest.approx(_category_accuracy(first, records))
    assert task_metric("compose", first, records) == pytest.approx(1 / len(COMPOSE_TAGS))
    # Unbalanced categories: the metric is not the plain mean over images.
    tag = COMPOSE_TAGS[0]
    subset = [r for r in records if r["tag"] != tag] + [r for r in records if r["tag"] == tag][:2]
    images = [blank_image if r["tag"] == tag else im for im, r in zip(render_records(subset), subset)]
    plain = np.mean([judge(detect(np.asarray(im)), r)[0] for im, r in zip(images, subset)])
    metric = task_metric("compose", images, subset)
    assert metric == pytest.approx(_category_accuracy(images, subset)) and metric < plain - 0.1


def test_text_metric_on_clean_renders(render_records, blank_image) -> None:
    records = load_prompts("text", "test")[:8]
    assert task_metric("text", render_records(records), records) > 0.95
    assert task_metric("text", [blank_image] * 8, records) == 0.0


def test_eval_config_json_round_trip_and_presets() -> None:
    import json

    cfg = EvalConfig(num_steps=7, tasks=["text"])
    assert EvalConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    sd35 = EvalConfig.sd35_medium(tasks=["compose"])
    assert (sd35.num_steps, sd35.guidance, sd35.scale(), sd35.tasks) == (40, None, 4.5, ["compose"])
    with pytest.raises(ValueError, match=r"unknown eval config keys \['steps'\]: known keys are"):
        EvalConfig.from_dict({"steps": 3})
    with pytest.raises(ValueError, match="guidance=-1 is invalid: use a number >= 0"):
        EvalConfig(guidance=-1)
