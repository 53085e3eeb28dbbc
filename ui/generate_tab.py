"""The Generate tab: prompt, seed, steps and guidance in; images and their reward scores out."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gradio as gr
from PIL import Image

from flowopd.models.base import to_pil
from flowopd.rewards import REWARDS
from flowopd.sampling import generate

from ..services.scores import reward_cells, scoring_rewards
from .state import AppState

DISPLAY_SIDE = 256
MAX_IMAGES = 16


@dataclass
class GenerateWidgets:
    prompt: gr.Textbox
    seed: gr.Number
    steps: gr.Slider
    guidance: gr.Slider
    count: gr.Slider
    button: gr.Button
    gallery: gr.Gallery
    scores: gr.Dataframe


def render(state: AppState | None = None) -> GenerateWidgets:
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", value='a sign that says "HAT"',
                                info='Try "a photo of three circles" or "a photo of a red square left of a triangle" '
                                     "(the compose column judges such composition prompts).")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0)
                count = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images (seeds seed, seed+1, ...)")
            with gr.Row():
                steps = gr.Slider(1, 100, value=20, step=1, label="Steps (ODE)")
                guidance = gr.Slider(1.0, 10.0, value=3.0, step=0.5, label="Guidance (CFG)")
            button = gr.Button("Generate", variant="primary")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Images", columns=4, height="auto")
            scores = gr.Dataframe(label="Reward scores", headers=["seed", *REWARDS], interactive=False)
    return GenerateWidgets(prompt, seed, steps, guidance, count, button, gallery, scores)


def run_generate(state: AppState, prompt: str, seed: float, steps: float, guidance: float, count: float):
    """Images (upscaled for display) and a table of every reward's score per image."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise gr.Error("Prompt is empty: type what the image should show.")
    if seed is None or seed < 0:
        raise gr.Error("Seed must be a whole number >= 0.")
    seeds = [int(seed) + i for i in range(int(count))]
    with state.lock:
        images = generate(state.model, [prompt] * len(seeds), seeds=seeds, num_steps=int(steps),
                          guidance=float(guidance))
    pil = to_pil(images)
    rewards = scoring_rewards(state.model)
    columns = reward_cells(pil, prompt, rewards)
    rows = [[s, *(columns[n][i] for n in rewards)] for i, s in enumerate(seeds)]
    side = (DISPLAY_SIDE, DISPLAY_SIDE)
    big = [(im.resize(side, Image.Resampling.NEAREST), f"seed {s}") for im, s in zip(pil, seeds)]
    return big, rows


def listen(w: GenerateWidgets, state: AppState, **_: object) -> None:
    w.button.click(partial(run_generate, state), inputs=[w.prompt, w.seed, w.steps, w.guidance, w.count],
                   outputs=[w.gallery, w.scores], api_name="generate", concurrency_id="gpu", concurrency_limit=1)
