"""GRPO under accelerate with 2 CPU processes (gloo): advantages over the gathered rewards, identical students.

The processes are forked (no re-import, about a second to start) and meet through a file store, as
``accelerate.debug_launcher`` does, but with a deadline so that a collective waiting forever fails the test.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
import torch

from flowopd.methods.grpo.loss import group_advantages

WORLD = 2
DEADLINE_S = 120


def _worker(out_dir: str, model_dir: str, fast: dict) -> None:
    torch.set_num_threads(1)
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # the parent's single-process state came along with the fork
    acc = Accelerator(cpu=True)
    torch.set_num_threads(1)  # accelerate may raise it for a multi-CPU run

    import flowopd.methods.grpo.trainer as trainer
    from flowopd.adapters import adapter_parameters
    from flowopd.methods.grpo.config import GRPOConfig
    from flowopd.models.tiny import TinyFlowModel

    seen = []
    real = trainer.gather_advantages

    def spy(accelerator, rewards, *args, **kwargs):
        out = real(accelerator, rewards, *args, **kwargs)
        seen.append({"local_rewards": rewards.clone(), "rewards": out.rewards.clone(),
                     "advantages": out.advantages.clone(), "local": out.local.clone()})
        return out

    trainer.gather_advantages = spy
    metrics = []
    model = TinyFlowModel.load(model_dir)
    cfg = GRPOConfig(**{**fast, "rewards": {"prefer": 1.0}, "prompt_tasks": {"prefer": 1.0}})
    result = trainer.train_grpo(model, cfg, out_dir, accelerator=acc, callback=metrics.append)
    torch.save({"seen": seen, "metrics": metrics, "step": result.step,
                "weights": {n: p.detach().clone() for n, p in adapter_parameters(model, "teacher").items()}},
               Path(out_dir) / f"rank{acc.process_index}.pt")


def _launch(fn, args: tuple) -> None:
    from accelerate.utils import PrepareForLaunch, patch_environment
    from torch.multiprocessing import start_processes

    with tempfile.NamedTemporaryFile() as rdv, patch_environment(
            world_size=WORLD, master_addr="127.0.0.1", master_port="0", accelerate_use_cpu="yes",
            accelerate_debug_rdv_file=rdv.name, accelerate_mixed_precision="no", omp_num_threads="1"):
        ctx = start_processes(PrepareForLaunch(fn, debug=True), args=args, nprocs=WORLD, start_method="fork",
                              join=False)
        deadline = time.monotonic() + DEADLINE_S
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    p.kill()
                pytest.fail(f"the {WORLD}-process run did not finish in {DEADLINE_S} s")


@pytest.mark.slow
def test_two_processes_gather_rewards_and_train_one_student(small_model_dir, tmp_path, fast):
    if os.name != "posix":
        pytest.skip("needs fork")
    _launch(_worker, (str(tmp_path), str(small_model_dir), fast))
    ranks = [torch.load(tmp_path / f"rank{k}.pt", weights_only=False) for k in range(WORLD)]

    (s0,), (s1,) = ranks[0]["seen"], ranks[1]["seen"]
    b = fast["batch_size"]
    gathered = torch.cat([s0["local_rewards"], s1["local_rewards"]])
    assert not torch.equal(s0["local_rewards"], s1["local_rewards"])  # each process sampled its own prompts
    for s, k in ((s0, 0), (s1, 1)):
        torch.testing.assert_close(s["rewards"], gathered)
        expected = group_advantages(gathered, [i // fast["group_size"] for i in range(2 * b)])
        torch.testing.assert_close(s["advantages"], expected)
        torch.testing.assert_close(s["local"], expected[k * b:(k + 1) * b])
    # Gradients are averaged across processes, so both hold the same student; only the main process reports.
    assert ranks[0]["step"] == ranks[1]["step"] == 2
    for name, value in ranks[0]["weights"].items():
        torch.testing.assert_close(ranks[1]["weights"][name], value)
    assert any(v.abs().sum() > 0 for n, v in ranks[0]["weights"].items() if "lora_B" in n)
    assert len(ranks[0]["metrics"]) == 1 and ranks[1]["metrics"] == []
    assert ranks[0]["metrics"][0]["images_per_s"] > 0 and "reward/prefer" in ranks[0]["metrics"][0]
    assert (tmp_path / "checkpoint" / "rng_0.pt").is_file() and (tmp_path / "checkpoint" / "rng_1.pt").is_file()
