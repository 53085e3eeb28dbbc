"""Every stage on the SD3 backend: GRPO, cold start (merge and sft) and OPD each run a few steps on the tiny
random StableDiffusion3Pipeline (SD3FlowModel: CLIP + T5 prompt encoding, the VAE for rewards) through the same
trainers and configs as the tiny model's tests."""

from __future__ import annotations

import pytest
import torch

from flowopd.adapters import adapter_names, adapter_parameters, load_adapter
from flowopd.coldstart.config import ColdStartConfig
from flowopd.coldstart.trainer import run_coldstart
from flowopd.layout import ADAPTER_DIR
from flowopd.methods.grpo.trainer import train_grpo
from flowopd.methods.opd.trainer import train_opd
from flowopd.models.sd3 import SD3FlowModel
from flowopd.testing import tiny_random_pipeline


@pytest.fixture
def sd3() -> SD3FlowModel:
    return SD3FlowModel(tiny_random_pipeline(seed=0), image_size=32, max_sequence_length=16)


def _trained(model: SD3FlowModel, name: str) -> bool:
    """Whether adapter ``name``'s B factors moved from their zero start."""
    return any(p.abs().sum() > 0 for n, p in adapter_parameters(model, name).items() if "lora_B" in n)


def _frozen_base(model: SD3FlowModel) -> dict[str, torch.Tensor]:
    """The transformer's base weights by their names before LoRA wrapped the layers."""
    return {n.replace(".base_layer", ""): p.detach().clone() for n, p in model.transformer.named_parameters()
            if "lora_" not in n}


def test_grpo_trains_a_teacher_on_sd3(sd3, grpo_config, tmp_path):
    base = _frozen_base(sd3)
    seen = []
    result = train_grpo(sd3, grpo_config(beta=0.04), tmp_path, callback=seen.append)

    assert (result.step, result.epoch) == (2, 1) and (tmp_path / ADAPTER_DIR).is_dir()
    assert _trained(sd3, "teacher")
    after = _frozen_base(sd3)
    assert after.keys() == base.keys() and all(torch.equal(p, after[n]) for n, p in base.items())  # LoRA only
    assert isinstance(seen[0]["reward/prefer"], float) and "kl/base/step_0" in seen[0]  # rewards on decoded images


@pytest.mark.parametrize("mode", ["merge", "sft"])
def test_coldstart_on_sd3(sd3, make_teachers, tmp_path, mode):
    teachers = make_teachers(sd3, {"compose": 1, "text": 2})
    cfg = ColdStartConfig(mode=mode, teachers=teachers, sft_steps=2, sft_batch_size=4, sft_samples_per_task=4,
                          sft_best_of=1, eval_steps=2, lora_rank=4, lora_alpha=8.0)
    folder = run_coldstart(sd3, cfg, tmp_path / mode)

    assert adapter_names(sd3) == [] and (tmp_path / mode / "coldstart.json").is_file()
    load_adapter(sd3, folder, "init")
    assert _trained(sd3, "init")  # the teachers' merge, or an SFT that moved B


def test_opd_distils_teachers_on_sd3(sd3, make_teachers, opd_config, tmp_path):
    teachers = make_teachers(sd3, {"compose": 1, "text": 2})
    seen = []
    result = train_opd(sd3, opd_config(teachers, beta_mar=0.02), tmp_path / "opd", callback=seen.append)

    assert result.step == 2 and (tmp_path / "opd" / ADAPTER_DIR).is_dir()
    assert {"teacher_compose", "teacher_text", "student"} <= set(adapter_names(sd3))
    assert _trained(sd3, "student")
    assert seen[0]["kl/teacher"] > 0 and seen[0]["kl/anchor"] >= 0
