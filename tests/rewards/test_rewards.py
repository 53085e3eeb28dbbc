"""The four rewards: registry, OCR, input formats and sizes, and that each ranks images the way it claims."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from flowopd.models.base import from_pil
from flowopd.rewards import REWARDS, get_reward, register_reward, weighted_reward
from flowopd.rewards.images import as_uint8_list
from flowopd.rewards.text import edit_distance, ocr_score, target_of
from flowopd.world.prompts import COMPOSE_TAGS, compose_record, text_record
from flowopd.world.scene import Scene, SceneObject, render
from flowopd.worldcheck import degrade

NAMES = ("compose", "text", "prefer", "quality")
WORDS = ["TEA", "HEN", "FLY", "NUT", "PAKE", "XY", "RUN", "AXLE"]


def _score(reward, images, records: list[dict]) -> list[float]:
    """Call a reward (a registered name or a function) with each record's prompt and metadata."""
    fn = get_reward(reward) if isinstance(reward, str) else reward
    return fn(images, [r.get("prompt", "") for r in records], records)


@pytest.fixture(scope="module")
def compose_records() -> list[dict]:
    rng = random.Random(5)
    return [dict(compose_record(tag, rng), tag=tag) for tag in COMPOSE_TAGS for _ in range(3)]


# --- registry ---------------------------------------------------------------------------------------------


def test_registry_by_name() -> None:
    assert set(NAMES) <= set(REWARDS)
    for name in NAMES:
        assert get_reward(name) is REWARDS[name] and callable(get_reward(name))


def test_unknown_reward_lists_names() -> None:
    with pytest.raises(ValueError, match="unknown reward 'clipscore'") as err:
        get_reward("clipscore")
    assert all(name in str(err.value) for name in NAMES)
    assert "or a real-image reward: ocr, pickscore[:FOLDER]" in str(err.value)  # flowopd.reward_names


def test_register_reward(monkeypatch: pytest.MonkeyPatch, blank_image) -> None:
    from flowopd.methods.grpo.config import GRPOConfig
    from flowopd.reward_names import REWARD_NAMES

    monkeypatch.setattr("flowopd.rewards.REWARDS", dict(REWARDS))
    monkeypatch.setattr("flowopd.reward_names.REWARD_NAMES", list(REWARD_NAMES))  # the names GRPO configs accept
    register_reward("ones", lambda images, prompts, metadata: [1.0] * len(prompts))
    assert get_reward("ones")([blank_image], [""], [{}]) == [1.0]
    assert GRPOConfig(rewards={"ones": 1.0}).rewards == {"ones": 1.0}  # a registered reward is a config's too
    with pytest.raises(TypeError, match="callable"):
        register_reward("bad", 3)


def test_weighted_reward(compose_records: list[dict], render_records, blank_image, noise_images) -> None:
    images = render_records(compose_records[:4]) + [blank_image, noise_images(1)[0]]
    records = compose_records[:4] + [compose_records[0]] * 2
    mixed = _score(weighted_reward({"compose": 0.5, "quality": 2.0}), images, records)
    compose, quality = _score("compose", images, records), _score("quality", images, records)
    expected = [0.5 * c + 2.0 * q for c, q in zip(compose, quality)]
    assert mixed == pytest.approx(expected)
    assert mixed[0] == pytest.approx(2.5)  # a clean, correct render scores 1 on both
    with pytest.raises(ValueError, match="unknown reward"):
        weighted_reward({"compose": 1.0, "nope": 1.0})


# --- text / OCR -------------------------------------------------------------------------------------------


def test_ocr_reads_rendered_words() -> None:
    images = [render(Scene(text=w)) for w in WORDS]
    records = [{"prompt": f'a sign that says "{w}"'} for w in WORDS]  # target from the quotes
    scores = _score("text", images, records)
    assert min(scores) >= 0.99, dict(zip(WORDS, scores))


def test_ocr_low_on_blank_and_noise(blank_image, noise_images) -> None:
    records = [{"prompt": "", "target": w} for w in WORDS[:4]]
    assert _score("text", [blank_image], records[:1]) == [0.0]
    scores = _score("text", noise_images(4, seed=1), records)
    assert max(scores) < 0.3, scores


def test_ocr_wrong_word_scores_by_edit_distance() -> None:
    image = render(Scene(text="TEA"))
    assert _score("text", [image], [{"prompt": "", "target": "TEN"}]) == [pytest.approx(2 / 3)]
    assert _score("text", [image], [{"prompt": "", "target": "FLUX"}]) == [0.0]


def test_no_target_scores_zero() -> None:
    assert _score("text", [render(Scene(text="TEA"))], [{"prompt": "a photo of a circle"}]) == [0.0]


def test_ocr_score_rule() -> None:
    assert ocr_score("TEA", "tea") == 1.0  # case-insensitive
    assert ocr_score("a sign TEA here", "TEA") == 1.0  # substring
    assert ocr_score("T E A", "TEA") == 1.0  # spaces removed
    assert ocr_score("TEN", "TEA") == pytest.approx(1 - 1 / 3)
    assert ocr_score("TE", "TEAS") == pytest.approx(1 - 2 / 4)
    assert ocr_score("", "TEA") == 0.0
    assert ocr_score("XXXXXXXX", "TEA") == 0.0  # distance capped at the target length
    assert ocr_score("TEA", "") == 0.0
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3 and edit_distance("ab", "ab") == 0


def test_target_of() -> None:
    assert target_of('a sign that says "TEA" and "HEN"') == "TEA"
    assert target_of("no quotes") is None
    assert target_of('says "TEA"', {"target": "HEN"}) == "HEN"


# --- input formats and sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_pil_uint8_and_tensor_inputs_agree(name: str, compose_records: list[dict], render_records) -> None:
    if name == "text":
        records = [text_record(w, random.Random(0)) for w in WORDS[:3]]
    else:
        records = compose_records[::4]
    pil = render_records(records)
    array = np.stack([np.asarray(im) for im in pil])
    tensor = from_pil(pil)
    assert tensor.dtype == torch.float32 and tensor.shape == (len(pil), 3, 32, 32)
    by_pil = _score(name, pil, records)
    assert _score(name, array, records) == pytest.approx(by_pil)
    assert _score(name, tensor, records) == pytest.approx(by_pil)
    assert all(0.0 <= s <= 1.0 for s in by_pil)
    if name in ("compose", "text", "quality"):
        assert min(by_pil) > 0.95, by_pil  # clean, correct renders


@pytest.mark.parametrize("name", NAMES)
def test_other_image_sizes(name: str, compose_records: list[dict], render_records) -> None:
    records = [text_record(w, random.Random(0)) for w in WORDS[:3]] if name == "text" else compose_records[::4]
    small, large = render_records(records, size=32), render_records(records, size=64)
    a, b = _score(name, small, records), _score(name, large, records)
    assert b == pytest.approx(a, abs=0.1)
    if name != "prefer":
        assert min(b) > 0.95


def test_bad_tensor_shape_raises() -> None:
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        as_uint8_list(torch.rand(2, 32, 32, 3))


def test_as_uint8_list_resizes_and_converts() -> None:
    arrays = as_uint8_list([render(Scene(), 64).convert("RGBA")], 32)
    assert arrays[0].shape == (32, 32, 3) and arrays[0].dtype == np.uint8
    assert as_uint8_list(torch.ones(1, 3, 8, 8) * 2)[0].max() == 255  # clamped to [0, 1]


# --- compose, quality, prefer rank images as claimed ------------------------------------------------------


def test_compose_reward_and_wrong_count(compose_records: list[dict], render_records, blank_image) -> None:
    assert _score("compose", render_records(compose_records), compose_records) == [1.0] * len(compose_records)
    two = {"prompt": "a photo of two squares", "include": [{"class": "square", "count": 2}],
           "exclude": [{"class": "square", "count": 3}]}
    one_square = render(Scene((SceneObject("square", "red", "big", 0.5, 0.5),)))
    assert _score("compose", [one_square], [two]) == [pytest.approx(0.5)]
    assert _score("compose", [blank_image], [two]) == [0.0]


def test_quality_clean_beats_noisy_and_blurred(compose_records: list[dict], render_records) -> None:
    clean = render_records(compose_records)
    rng = np.random.default_rng(0)
    q = {kind: np.mean(_score("quality", [degrade(im, kind, rng) for im in clean], compose_records))
         for kind in ("clean", "noisy", "blurred")}
    assert q["clean"] > 0.9
    assert q["clean"] - q["noisy"] > 0.5 and q["clean"] - q["blurred"] > 0.5, q


def test_quality_low_on_blank_and_noise(blank_image, noise_images) -> None:
    assert _score("quality", [blank_image], [{}]) == [0.0]
    assert max(_score("quality", noise_images(3), [{}] * 3)) < 0.3


def test_prefer_big_centred_vivid_over_small_corner(blank_image) -> None:
    big = render(Scene((SceneObject("circle", "red", "big", 0.5, 0.5),)))
    corner = render(Scene((SceneObject("circle", "red", "small", 0.15, 0.15),)))
    pale = render(Scene((SceneObject("circle", "yellow", "small", 0.85, 0.85),)))
    big_score, corner_score, pale_score = _score("prefer", [big, corner, pale], [{}] * 3)
    assert big_score > corner_score + 0.15
    assert big_score > pale_score + 0.15
    assert _score("prefer", [blank_image], [{}]) == [0.0]
