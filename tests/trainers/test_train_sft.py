"""SFT teachers: a LoRA fine-tuned on an image set (written by ``world dataset``) lowers its flow-matching loss,
resumes exactly, writes its config beside the adapter, and serves as a teacher of a cold start and of OPD."""

from __future__ import annotations

import json

import pytest
import torch

from flowopd.adapters import adapter_parameters, load_adapter
from flowopd.coldstart.config import ColdStartConfig
from flowopd.flow_matching import flow_matching_loss
from flowopd.methods.sft.config import SFTConfig
from flowopd.models.base import from_pil
from flowopd.world.dataset import write_dataset

SMALL_RUN = dict(steps=8, batch_size=8, lr=3e-3, lora_rank=4, lora_alpha=8.0, checkpoint_every=4, sample_every=0)


@pytest.fixture(scope="module")
def text_set(tmp_path_factory):
    """16 clean renders of text prompts with captions (the small model is 32 px, as the built-in one)."""
    return write_dataset("text", 16, tmp_path_factory.mktemp("sets") / "text", seed=3)


def _set_loss(model, folder, adapter: str | None) -> float:
    """The flow-matching loss of the whole set, fixed noise and t."""
    from PIL import Image

    from flowopd.adapters import use_adapter

    files = sorted(folder.glob("*.png"))
    x = model.encode_images(from_pil([Image.open(f) for f in files]))
    cond = model.encode_prompts([f.with_suffix(".txt").read_text().strip() for f in files])
    with torch.no_grad(), use_adapter(model, adapter):
        return sum(flow_matching_loss(model, x, cond, torch.Generator().manual_seed(k)).loss.item() for k in range(4))


def test_sft_lowers_the_loss_of_its_image_set_and_writes_its_config(tiny, text_set, tmp_path):
    from flowopd.methods.sft.trainer import train_sft

    model = tiny()
    before = _set_loss(model, text_set, None)
    metrics, samples = [], []
    cfg = SFTConfig(data=str(text_set), **{**SMALL_RUN, "steps": 30, "sample_every": 15, "sample_count": 2,
                                           "eval_steps": 2})
    result = train_sft(model, cfg, tmp_path, callback=lambda d: (metrics.append(d), samples.extend(d.get("samples",
                                                                                                           []))))
    after = _set_loss(model, text_set, "teacher")
    assert after < 0.8 * before, (before, after)
    assert [m["step"] for m in metrics] == list(range(1, 31)) and all(m["loss"] > 0 for m in metrics)
    assert len(samples) == 4 and samples[0]["prompt"] == (text_set / "00000.txt").read_text().strip()
    assert (result.step, result.epoch, result.stopped) == (30, 15, False)
    assert (tmp_path / "adapter" / "adapter.json").is_file()
    stored = json.loads((tmp_path / "sft.json").read_text())
    assert stored["kind"] == "sft" and stored["data"] == str(text_set)
    assert SFTConfig.from_json(tmp_path / "sft.json") == cfg


def test_resume_equals_an_uninterrupted_run(tiny, text_set, tmp_path):
    from flowopd.methods.sft.trainer import train_sft

    cfg = SFTConfig(data=str(text_set), **{**SMALL_RUN, "caption_dropout": 0.5})
    straight = tiny()
    train_sft(straight, cfg, tmp_path / "straight")
    stopped = tiny()
    steps = []
    first = train_sft(stopped, cfg, tmp_path / "resumed", callback=lambda d: steps.append(d["step"]),
                      should_stop=lambda: len(steps) == 3)
    assert first.stopped and first.step == 3
    resumed = tiny()  # a fresh process: the adapter, optimizer and step come from the checkpoint
    second = train_sft(resumed, cfg, tmp_path / "resumed", callback=lambda d: steps.append(d["step"]))
    assert steps == list(range(1, 9)) and second.step == 8
    a, b = adapter_parameters(straight, "teacher"), adapter_parameters(resumed, "teacher")
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=0, atol=0)


def test_an_sft_adapter_is_a_teacher_of_a_cold_start_and_of_opd(tiny, text_set, make_teachers, opd_config, tmp_path):
    from flowopd.coldstart.trainer import run_coldstart
    from flowopd.methods.opd.trainer import train_opd
    from flowopd.methods.sft.trainer import train_sft

    model = tiny()
    sft = train_sft(model, SFTConfig(data=str(text_set), **{**SMALL_RUN, "steps": 2}), tmp_path / "sft")
    teachers = {"text": str(sft.adapter_dir), **make_teachers(model, {"prefer": 2})}
    merged = run_coldstart(model, ColdStartConfig(mode="merge", teachers=teachers), tmp_path / "merge")
    load_adapter(model, merged, "merged")
    assert adapter_parameters(model, "merged")
    result = train_opd(model, opd_config(teachers, init=str(merged)), tmp_path / "opd")
    assert result.step == 2 and (result.adapter_dir / "adapter.json").is_file()


def test_sft_needs_an_image_set(tiny, tmp_path):
    from flowopd.datasets import DatasetError
    from flowopd.methods.sft.trainer import train_sft

    with pytest.raises(ValueError, match=r"^data='' is invalid: give the folder of the image set"):
        train_sft(tiny(), SFTConfig(), tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        train_sft(tiny(), SFTConfig(data=str(tmp_path / "empty")), tmp_path / "out")
    assert not (tmp_path / "out" / "adapter").exists()


def test_the_config_helps_every_field_round_trips_and_has_a_quick_preset(tmp_path):
    from flowopd.config.presets import preset

    assert all(info.help.strip() for info in SFTConfig.describe())
    cfg = SFTConfig(data=str(tmp_path), lr=1e-3)
    assert SFTConfig.from_json(cfg.to_json()) == cfg
    quick = preset("sft", "quick")
    assert quick.steps < SFTConfig().steps and quick.data == ""
    assert preset("sft", "paper").lora_rank == 32
    with pytest.raises(ValueError, match=r"caption_dropout=1.0 is invalid: use a number in \[0, 1\)"):
        SFTConfig(caption_dropout=1.0)
    with pytest.raises(ValueError, match=r"resize='crop' is invalid: use one of downscale, refuse"):
        SFTConfig(resize="crop")


@pytest.fixture(scope="module")
def reg_set(tmp_path_factory):
    """16 samples of the small random model (seed 0) on prefer and quality prompts: a regularization set."""
    from tests.trainers.conftest import _tiny

    return write_dataset("prefer,quality", 16, tmp_path_factory.mktemp("sets") / "reg", seed=5, model=_tiny(),
                         steps=3)


def _velocity_gap(model, folder) -> float:
    """Mean squared difference between the LoRA's and the base's velocity on a set, fixed noise and t."""
    from PIL import Image

    from flowopd.adapters import use_adapter

    files = sorted(folder.glob("*.png"))
    x = model.encode_images(from_pil([Image.open(f) for f in files]))
    cond = model.encode_prompts([f.with_suffix(".txt").read_text().strip() for f in files])
    gen = torch.Generator().manual_seed(0)
    t = torch.rand(len(x), generator=gen)
    x_t = (1 - t[:, None, None, None]) * x + t[:, None, None, None] * torch.randn(x.shape, generator=gen)
    with torch.no_grad():
        with use_adapter(model, None):
            base = model.velocity(x_t, t, cond)
        with use_adapter(model, "teacher"):
            lora = model.velocity(x_t, t, cond)
    return float((lora - base).pow(2).mean())


def test_prior_preservation_keeps_the_base_on_the_regularization_prompts(tiny, text_set, reg_set, tmp_path):
    from flowopd.methods.sft.trainer import train_sft

    gaps, data_losses = {}, {}
    for name, extra in (("plain", {}), ("prior", {"reg_data": str(reg_set), "prior_weight": 10.0})):
        model, metrics = tiny(), []
        train_sft(model, SFTConfig(data=str(text_set), **{**SMALL_RUN, "steps": 20}, **extra), tmp_path / name,
                  callback=metrics.append)
        gaps[name], data_losses[name] = _velocity_gap(model, reg_set), _set_loss(model, text_set, "teacher")
        if extra:
            assert {"sft/data_loss", "sft/prior_loss"} <= set(metrics[-1])
            last = metrics[-1]
            assert last["loss"] == pytest.approx(last["sft/data_loss"] + 10 * last["sft/prior_loss"], rel=1e-5)
    assert gaps["prior"] < 0.7 * gaps["plain"], gaps  # the LoRA moved the base less where the set asks nothing
    assert data_losses["prior"] < _set_loss(tiny(), text_set, None)  # and still learned its own set


def test_resume_with_a_regularization_set_equals_an_uninterrupted_run(tiny, text_set, reg_set, tmp_path):
    from flowopd.methods.sft.trainer import train_sft

    cfg = SFTConfig(data=str(text_set), reg_data=str(reg_set), prior_weight=0.5, **SMALL_RUN)
    straight = tiny()
    train_sft(straight, cfg, tmp_path / "straight")
    steps: list[int] = []
    train_sft(tiny(), cfg, tmp_path / "resumed", callback=lambda d: steps.append(d["step"]),
              should_stop=lambda: len(steps) == 3)
    resumed = tiny()
    train_sft(resumed, cfg, tmp_path / "resumed")
    a, b = adapter_parameters(straight, "teacher"), adapter_parameters(resumed, "teacher")
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=0, atol=0)


def test_a_missing_or_bad_regularization_set_names_reg_data(tiny, text_set, tmp_path):
    from flowopd.datasets import DatasetError
    from flowopd.methods.sft.trainer import train_sft

    with pytest.raises(ValueError, match=r"^reg_data='/nope' is invalid: this folder does not exist"):
        train_sft(tiny(), SFTConfig(data=str(text_set), reg_data="/nope"), tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        train_sft(tiny(), SFTConfig(data=str(text_set), reg_data=str(tmp_path / "empty")), tmp_path / "out")
    with pytest.raises(ValueError, match=r"prior_weight=-1 is invalid"):
        SFTConfig(prior_weight=-1)


def test_sft_in_bf16_trains_an_fp32_lora_on_a_bf16_base(tiny, text_set, tmp_path):
    """mixed_precision bf16, as the RL stages: the frozen base in bf16, the LoRA's weights in fp32 and training."""
    from flowopd.adapters import trainable_parameters
    from flowopd.methods.sft.trainer import train_sft

    model = tiny()
    seen = []
    train_sft(model, SFTConfig(data=str(text_set), **{**SMALL_RUN, "steps": 6, "mixed_precision": "bf16"}), tmp_path,
              callback=seen.append)
    lora = trainable_parameters(model, "teacher")
    trained_b = [p for n, p in model.transformer.named_parameters() if "lora_B.teacher" in n]
    assert all(p.dtype == torch.float32 for p in lora) and trained_b and any(p.abs().sum() > 0 for p in trained_b)
    base = [p for n, p in model.transformer.named_parameters() if "lora_" not in n and p.is_floating_point()]
    assert base and all(p.dtype == torch.bfloat16 for p in base)
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in seen) and len(seen) == 6
