"""The joint <source>-mix objective: forward-process RL on reward tasks plus the flow-matching loss of image sets."""

from __future__ import annotations

import pytest
import torch

from flowopd.adapters import adapter_parameters
from flowopd.methods.awm.config import AWMConfig
from flowopd.methods.awm.trainer import train_awm
from flowopd.training.image_sets import ImageSetLosses
from flowopd.world.dataset import write_dataset

FAST = dict(epochs=1, batch_size=8, group_size=4, train_batch_size=4, num_steps=3, optimizer_steps_per_epoch=2,
            eval_steps=3, ema=False, sample_every=0, checkpoint_every=1, lora_rank=4, lora_alpha=8.0,
            timesteps_per_sample=2)


@pytest.fixture
def text_set(tiny, tmp_path):
    return str(write_dataset("text", 6, tmp_path / "text", size=tiny().image_size))


def test_every_task_weighs_alike(tiny, text_set) -> None:
    from flowopd.adapters import add_lora

    model = tiny()
    add_lora(model, "student", 4, 8.0)
    sets = ImageSetLosses(model, {"text": text_set}, "student", seed=0)
    rl = torch.tensor(2.0)
    total, values = sets.joint(rl, 3, 4, epoch=0, rank=0, call=0)
    set_loss = sets.loss("text", 4, epoch=0, rank=0, call=0)  # the same draw: (seed, epoch, rank, call)
    torch.testing.assert_close(total, (3 * rl + set_loss) / 4)
    assert values == {"sft/text": pytest.approx(float(set_loss))}
    assert float(sets.loss("text", 4, epoch=0, rank=0, call=1)) != float(set_loss)  # another call, another batch


def test_awm_with_an_image_set_trains_both_and_logs_the_set_loss(tiny, text_set, tmp_path) -> None:
    cfg = AWMConfig(**FAST, rewards={"prefer": 1.0}, prompt_tasks={"prefer": 1.0}, sft_data={"text": text_set})
    seen: list[dict] = []
    model = tiny()
    train_awm(model, cfg, tmp_path / "run", callback=seen.append)
    assert seen and all(k in seen[-1] for k in ("sft/text", "reward/prefer"))
    lora_b = [p for n, p in adapter_parameters(model, "teacher").items() if "lora_B" in n]
    assert any(float(p.detach().abs().sum()) > 0 for p in lora_b)


def test_a_task_taught_by_reward_and_image_set_is_refused(text_set) -> None:
    with pytest.raises(ValueError, match="sft_data.*both"):
        AWMConfig(rewards={"text": 1.0}, prompt_tasks={"text": 1.0}, sft_data={"text": text_set})
