"""Shared fixtures: a small random tiny model saved to a temporary folder, scene helpers, a CLI runner.

Helpers are fixtures, not imports from this file (another conftest.py under tests/ would shadow the
module name). Nothing here touches the built-in checkpoint (flowopd/assets/tiny-base): every test that
samples uses the small random model below, which builds in milliseconds and samples 32 px in a few ms.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flowopd.world.prompts import scene_for
from flowopd.world.scene import Scene, render

# Before anything imports huggingface_hub (the model modules are imported inside the fixtures).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# The models under test are tiny: intra-op threads only add overhead, and on a busy 2-core machine
# two OpenMP threads spinning against another process make a training step ~100x slower.
torch.set_num_threads(1)

SMALL_CONFIG = dict(num_layers=1, num_heads=2, head_dim=16, text_width=32, text_layers=1, pooled_dim=32)


@pytest.fixture(scope="session")
def small_config():
    """The small TinyConfig (1 layer, width 32): a step of training or sampling takes milliseconds."""
    from flowopd.models.tiny import TinyConfig

    return TinyConfig(**SMALL_CONFIG)


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory: pytest.TempPathFactory, small_config) -> Path:
    """A folder holding a small random tiny checkpoint (read-only for tests: copy it to corrupt it)."""
    from flowopd.models.tiny import TinyFlowModel
    from flowopd.pretrain import build_tokenizer

    torch.manual_seed(0)
    model = TinyFlowModel(small_config, build_tokenizer(24))
    folder = tmp_path_factory.mktemp("small-model")
    model.save(folder)
    return folder


@pytest.fixture(scope="session")
def small_model(small_model_dir: Path):
    from flowopd.models.tiny import TinyFlowModel

    return TinyFlowModel.load(small_model_dir)


def _render_records(records: list[dict], seed: int = 0, size: int = 32) -> list[Image.Image]:
    rng = random.Random(seed)
    return [render(scene_for(r, rng), size) for r in records]


def _noise_images(n: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="session")
def render_records():
    """``render_records(records, seed=0, size=32)``: clean renders of scenes that satisfy ``records``
    (what a perfect generator would draw), PIL images."""
    return _render_records


@pytest.fixture(scope="session")
def blank_image() -> Image.Image:
    """A 32 px render of an empty scene (background only)."""
    return render(Scene())


@pytest.fixture(scope="session")
def noise_images():
    """``noise_images(n, size=32, seed=0)``: uniform random-noise uint8 images [size, size, 3]."""
    return _noise_images


@pytest.fixture
def cli(capsys: pytest.CaptureFixture):
    """Run ``flowopd_studio.cli.main(argv)`` in-process: returns (exit code, stdout, stderr).

    ``--help`` (argparse's SystemExit) is turned into its exit code as well.
    """
    from flowopd_studio.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run
