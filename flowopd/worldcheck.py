"""``flowopd world check``: do the rewards measure what they claim on renders with known answers?

Scores clean renders of the test prompts (what a perfect generator would draw) and the same renders
degraded with pixel noise or blur, with every reward, and times each reward per image.
"""

from __future__ import annotations

import random
import time

import numpy as np
from PIL import Image, ImageFilter

from .rewards import REWARDS
from .rewards.text import read_text
from .world.detector import detect, judge
from .world.prompts import scene_for
from .world.scene import IMAGE_SIZE, render
from .world.splits import load_prompts

NOISE_SIGMA = 20.0  # pixel noise, of 255
BLUR_RADIUS = 1.0  # Gaussian blur radius at 32 px, scaled with the image size
# The prompts each reward is checked on: its own task's test split; prefer and quality see all kinds.
REWARD_TASKS = {"compose": "compose", "text": "text", "prefer": "quality", "quality": "quality"}


def degrade(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    if kind == "clean":
        return image
    if kind == "noisy":
        noisy = np.asarray(image, np.float32) + rng.normal(0, NOISE_SIGMA, (*image.size[::-1], 3))
        return Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8))
    if kind == "blurred":
        return image.filter(ImageFilter.GaussianBlur(BLUR_RADIUS * image.size[0] / IMAGE_SIZE))
    raise ValueError(f"unknown degradation {kind!r}: use clean, noisy or blurred")


def world_check(seed: int = 0, size: int = IMAGE_SIZE) -> dict:
    """The world-check report (JSON-serialisable); see the module docstring."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    report: dict = {"rewards": {}, "ms_per_image": {}}

    compose = load_prompts("compose", "test")
    exact = 0
    for record in compose:
        scene = scene_for(record, rng)
        found = detect(np.asarray(render(scene, size)))
        truth = sorted((o.shape, o.color) for o in scene.objects)
        exact += truth == sorted((d.shape, d.color) for d in found) and judge(found, record)[0]
    report["detector_clean_accuracy"] = exact / len(compose)

    text = load_prompts("text", "test")
    read = [read_text(np.asarray(render(scene_for(r, rng), size).resize((96, 96), Image.Resampling.BICUBIC)))
            for r in text]
    report["ocr_clean_accuracy"] = float(np.mean([t.replace(" ", "").upper() == r["target"]
                                                  for t, r in zip(read, text)]))

    for name, fn in REWARDS.items():
        records = load_prompts(REWARD_TASKS[name], "test")
        clean = [render(scene_for(r, rng), size) for r in records]
        prompts = [r["prompt"] for r in records]
        row = {}
        for kind in ("clean", "noisy", "blurred"):
            images = [degrade(im, kind, nrng) for im in clean]
            start = time.perf_counter()
            row[kind] = float(np.mean(fn(images, prompts, records)))
            if kind == "clean":
                report["ms_per_image"][name] = 1000 * (time.perf_counter() - start) / len(images)
        report["rewards"][name] = row
    return report
