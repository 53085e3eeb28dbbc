"""The comparison grid as one PNG: column headers (model and where it comes from), one row per prompt and
seed with every reward's score under each image, the best cell of a row framed, per-task means below."""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

from flowopd.rewards import REWARDS
from flowopd.world.prompts import TASKS

from .compare import Comparison, best_columns, task_means

CELL = 128
LABEL_W = 190
LINE = 13
PAD = 6
BEST = (214, 39, 40)
INK = (20, 20, 20)
MUTED = (110, 110, 110)


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _wrap(text: str, width_px: int) -> list[str]:
    return textwrap.wrap(text, max(8, width_px // 6)) or [""]


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def grid_image(result: Comparison, cell: int = CELL) -> Image.Image:
    """The grid of ``result`` as an RGB image (white background)."""
    font, rewards = _font(), list(REWARDS)
    col_w = cell + 2 * PAD
    headers = [[s.label, *_wrap(s.origin, col_w)][:8] for s in result.columns]
    head_h = PAD + LINE * max(len(h) for h in headers) + PAD
    score_h = LINE * len(rewards) + PAD
    row_h = cell + PAD + score_h
    means_h = LINE * (len(result.columns) + 2) + PAD
    width = max(LABEL_W + col_w * len(result.columns), LABEL_W + 70 * (len(TASKS) + 1) + PAD)
    height = head_h + row_h * len(result.rows) + means_h + LINE
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for c, lines in enumerate(headers):
        x = LABEL_W + c * col_w + PAD
        for i, line in enumerate(lines):
            draw.text((x, PAD + i * LINE), line, fill=INK if i == 0 else MUTED, font=font)
    best = best_columns(result)
    for r, ((item, seed), images) in enumerate(zip(result.rows, result.images)):
        y = head_h + r * row_h
        label = _wrap(item.prompt, LABEL_W - 2 * PAD)[:6] + [f"seed {seed}" + (f", task {item.task}"
                                                                                 if item.task else "")]
        for i, line in enumerate(label):
            draw.text((PAD, y + i * LINE), line, fill=INK if i < len(label) - 1 else MUTED, font=font)
        for c, image in enumerate(images):
            x = LABEL_W + c * col_w + PAD
            img.paste(image.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST), (x, y))
            if c in best[r]:
                draw.rectangle([x - 3, y - 3, x + cell + 2, y + cell + 2], outline=BEST, width=3)
            scores = result.scores[r][c]
            for i, name in enumerate(rewards):
                mark = "*" if c in best[r] and name == item.task else ""
                draw.text((x, y + cell + PAD + i * LINE), f"{name} {fmt(scores.get(name))}{mark}",
                          fill=BEST if mark else INK, font=font)
    y = head_h + row_h * len(result.rows) + PAD
    draw.text((PAD, y), "per-task means (each task's reward over its prompts)", fill=INK, font=font)
    means = task_means(result)
    cols = [*TASKS, "average"]
    for j, name in enumerate(cols):
        draw.text((LABEL_W + j * 70, y + LINE), name, fill=MUTED, font=font)
    for c, (source, row) in enumerate(zip(result.columns, means)):
        yy = y + LINE * (c + 2)
        draw.text((PAD, yy), source.label[:30], fill=INK, font=font)
        for j, name in enumerate(cols):
            draw.text((LABEL_W + j * 70, yy), fmt(row[name]), fill=INK, font=font)
    scales = ("guidance " + ", ".join(f"{s.label[:12]} {g:g}" for s, g in zip(result.columns, result.column_guidance))
              if result.guidance is None else f"guidance {result.guidance:g}")
    draw.text((PAD, height - LINE), f"same seeds and initial noise per row; ODE {result.num_steps} steps, "
              f"{scales}; framed: best on the prompt's task", fill=MUTED, font=font)
    return img
