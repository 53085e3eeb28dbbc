"""Same-seed comparison: identical noise across columns, best per row, per-task means, the grid PNG."""

from __future__ import annotations

import pytest

from flowopd_studio.services import compare as cmp
from flowopd_studio.services.sources import Source, base_source


def _adapter_source(folder, label):
    return Source(f"test:{label}", label, "teacher", "a test adapter", folder)


def test_zero_adapter_gives_the_base_images(small_model, make_adapter, tmp_path):
    """A fresh LoRA (B = 0) from the same seeds draws exactly the base's images; a trained one does not."""
    zero = make_adapter(small_model, tmp_path / "zero", zero=True)
    moved = make_adapter(small_model, tmp_path / "moved", zero=False, seed=3)
    items = cmp.prompt_items("a photo of three circles\na sign that says \"HAT\"")
    result = cmp.compare(small_model, [base_source("small"), _adapter_source(zero, "zero"),
                                       _adapter_source(moved, "moved")], items, [0, 1], num_steps=3)
    assert len(result.rows) == 4 and all(len(r) == 3 for r in result.images)
    for base, zero_img, moved_img in result.images:
        assert base.tobytes() == zero_img.tobytes()
        assert base.tobytes() != moved_img.tobytes()
    assert result.images[0][0].tobytes() != result.images[1][0].tobytes()  # seeds 0 and 1 differ


def test_adapters_are_cached_and_a_rewritten_folder_reloads(small_model, make_adapter, tmp_path):
    from flowopd.adapters import adapter_names
    from flowopd_studio.services.adapter_cache import cached_adapter, forget

    folder = make_adapter(small_model, tmp_path / "a", zero=False, seed=1)
    name = cached_adapter(small_model, folder)
    assert cached_adapter(small_model, folder) == name  # loaded once
    make_adapter(small_model, folder, zero=False, seed=2)  # the folder is written again
    newer = cached_adapter(small_model, folder)
    assert newer != name and name not in adapter_names(small_model) and newer in adapter_names(small_model)
    forget(small_model, folder)
    assert newer not in adapter_names(small_model)


def _fake(rows_scores, tasks, n_columns):
    items = [cmp.PromptItem(f"p{i}", t, {}) for i, t in enumerate(tasks)]
    result = cmp.Comparison([base_source("m")] * n_columns, [(it, 0) for it in items])
    result.scores = rows_scores
    return result


def test_best_per_row_uses_the_prompts_task_and_skips_ties():
    s = lambda text, prefer: {"compose": None, "text": text, "prefer": prefer, "quality": 0.5}  # noqa: E731
    result = _fake([[s(0.2, 0.9), s(0.7, 0.1), s(0.7, 0.3)],  # text prompt: columns 1 and 2 tie for best
                    [s(0.2, 0.9), s(0.7, 0.1), s(0.1, 0.3)],  # prefer prompt: column 0
                    [s(0.5, 0.5), s(0.5, 0.5), s(0.5, 0.5)]], ["text", "prefer", "text"], 3)
    assert cmp.best_columns(result) == [[1, 2], [0], []]


def test_task_means_average_each_task_over_its_prompts():
    s = lambda text, prefer: {"compose": None, "text": text, "prefer": prefer, "quality": 0.5}  # noqa: E731
    result = _fake([[s(0.2, 0.9), s(0.6, 0.1)], [s(0.4, 0.0), s(0.8, 0.0)], [s(0.0, 0.5), s(0.0, 0.7)]],
                   ["text", "text", "prefer"], 2)
    means = cmp.task_means(result)
    assert means[0]["text"] == pytest.approx(0.3) and means[1]["text"] == pytest.approx(0.7)
    assert means[0]["prefer"] == pytest.approx(0.5) and means[1]["prefer"] == pytest.approx(0.7)
    assert means[0]["compose"] is None and means[0]["quality"] is None  # no prompt of those tasks
    assert means[1]["average"] == pytest.approx((0.7 + 0.7) / 2)


def test_prompt_items_from_a_task_set_a_list_and_bad_input():
    items = cmp.prompt_items(task="text", count=3)
    assert len(items) == 3 and all(i.task == "text" and i.record["target"] for i in items)
    items = cmp.prompt_items('a photo of three circles\n\n  a sign that says "HAT"  \nsomething else')
    assert [i.task for i in items] == ["compose", "text", None]
    with pytest.raises(ValueError, match="Prompts is empty"):
        cmp.prompt_items("  \n ")
    with pytest.raises(ValueError, match="unknown"):
        cmp.prompt_items(task="painting")
    assert cmp.parse_seeds("0, 3 5") == [0, 3, 5]
    with pytest.raises(ValueError, match="Seeds"):
        cmp.parse_seeds("-1")


def test_scores_cover_every_reward_and_the_grid_renders(small_model):
    from flowopd.rewards import REWARDS
    from flowopd_studio.services.grid import grid_image

    items = cmp.prompt_items(task="compose", count=1) + cmp.prompt_items('a sign that says "HAT"')
    result = cmp.compare(small_model, [base_source("small"), base_source("small")], items, [0], num_steps=2)
    for (item, _), cells in zip(result.rows, result.scores):
        assert all(set(c) == set(REWARDS) for c in cells)
        assert (cells[0]["compose"] is None) == (item.task == "text")  # the text prompt is outside the grammar
    image = grid_image(result)
    assert image.mode == "RGB" and image.width > 2 * 128 and image.height > 2 * 128


def test_one_adapter_is_one_column(tmp_path):
    """A trained teacher is also its run, an imported example also the example: Compare lists each adapter once
    (the first: examples, then runs, then teachers), while different adapters stay apart."""
    import shutil

    from flowopd_studio.services.examples import EXAMPLES_DIR
    from flowopd_studio.services.sources import Source, unique

    example = EXAMPLES_DIR / "teacher-text"
    copy = tmp_path / "store" / "teachers" / "example-teacher-text"
    shutil.copytree(example, copy)
    other = EXAMPLES_DIR / "teacher-prefer"
    sources = [Source("base", "base", "base", "the base"),
               Source("example:teacher-text", "teacher-text", "teacher", "built-in example", example, "text"),
               Source("teacher:example-teacher-text", "example-teacher-text", "teacher", "imported", copy, "text"),
               Source("example:teacher-prefer", "teacher-prefer", "teacher", "built-in example", other, "prefer"),
               Source("run:r0123456789", "still-training", "teacher", "run", tmp_path / "no-adapter-yet")]
    assert [s.key for s in unique(sources)] == ["base", "example:teacher-text", "example:teacher-prefer",
                                                "run:r0123456789"]


def test_an_sd3_model_is_scored_with_real_image_rewards_not_the_tiny_worlds() -> None:
    """On SD3 the text column is OCR's; the columns no reward can score offline are empty, not the tiny
    world's 32 px shape judges."""
    from flowopd.models.sd3 import SD3FlowModel
    from flowopd.testing import tiny_random_pipeline
    from flowopd_studio.services import compare as cmp
    from flowopd_studio.services.scores import NO_REWARD, reward_cells, scoring_rewards
    from flowopd_studio.services.sources import base_source

    sd3 = SD3FlowModel(tiny_random_pipeline(seed=0), image_size=32, max_sequence_length=16)
    rewards = scoring_rewards(sd3)
    assert set(rewards) == {"compose", "text", "prefer", "quality"}
    assert [n for n, fn in rewards.items() if fn is None] == ["compose", "prefer", "quality"]
    items = cmp.prompt_items('a sign that says "HAT"', None, 1)
    result = cmp.compare(sd3, [base_source("tiny sd3")], items, [0], num_steps=2)
    (cells,) = result.scores[0]
    assert isinstance(cells["text"], float) and cells["compose"] is None and cells["prefer"] is None
    shown = reward_cells(result.images[0], 'a sign that says "HAT"', rewards)
    assert shown["prefer"] == [NO_REWARD] and isinstance(shown["text"][0], float)
    assert scoring_rewards(None).keys() >= {"compose", "text", "prefer", "quality"}  # the tiny model's
