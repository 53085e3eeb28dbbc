"""The two memory layouts of Flow-OPD's Stage 2 that the benchmark compares, both run by the library's trainer.

* ``adapters`` (ours, docs/method.md, "Adapters on one base"): one frozen base in the training dtype; every teacher,
  the MAR anchor
  and the student are named LoRA adapters on it, switched per forward. This is
  :class:`flowopd.methods.opd.trainer.OPDTrainer` as it is.
* ``full-copy`` (the released code): the policy is the base with the student's LoRA, and each
  teacher and the anchor is a whole transformer of its own with its LoRA merged into the weights.
  :class:`FullCopyOPDTrainer` is the same trainer with the teacher and anchor forwards sent to those copies;
  rollouts, the loss (:func:`flowopd.methods.opd.loss.distill_step_loss`) and the optimizer step are unchanged.

Teachers and anchor are random LoRA adapters written once (:func:`write_random_adapters`) and loaded by both.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from ..adapters import (
    adapter_names,
    adapter_of_parameter,
    adapter_parameters,
    add_lora,
    delete_adapter,
    drop_adapter,
    lora_layers,
    save_adapter,
)
from ..methods.opd.config import OPDConfig
from ..methods.opd.loss import routed_velocity
from ..methods.opd.trainer import OPDTrainer
from ..models.base import FlowModel, PromptEmbeds
from ..sampling import SDEStep
from ..training.rollout import Rollout
from ..world.prompts import TASKS
from .model import BenchFlowModel, module_bytes

DESIGNS = ("adapters", "full-copy")
ANCHOR_DIR = "anchor"


def write_random_adapters(model: FlowModel, folder: Path, teachers: int, rank: int, *, std: float = 0.01,
                          seed: int = 0) -> tuple[dict[str, str], str]:
    """Random LoRA teachers (one per task of the tiny world, ``TASKS[:teachers]``) and an anchor, saved for
    ``model``'s base in ``folder``; the adapters are removed from the model again.

    Returns:
        ({task: teacher folder}, anchor folder).
    """
    folders = {}
    for k, task in enumerate([*TASKS[:teachers], ANCHOR_DIR]):
        add_lora(model, "bench_tmp", rank, 2.0 * rank, seed=seed + k)
        g = torch.Generator().manual_seed(seed + 100 + k)
        with torch.no_grad():  # B starts at 0: give the adapter a real (small) delta
            for name, p in adapter_parameters(model, "bench_tmp").items():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * std)
        folders[task] = str(save_adapter(model, "bench_tmp", folder / task))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            delete_adapter(model, "bench_tmp")
    anchor = folders.pop(ANCHOR_DIR)
    return folders, anchor


def opd_config(teachers: dict[str, str], anchor: str, *, batch: int, micro_batch: int, steps: int, rank: int,
               mixed_precision: str, seed: int = 0) -> OPDConfig:
    """One epoch = one OPD iteration: ``batch`` SDE rollouts of ``steps`` steps, then one optimizer step over
    the trained steps (SD3.5 settings: 99 % of the steps trained, CFG 4.5, LoRA alpha 2r, MAR 0.02 towards
    the anchor adapter; rewards are not computed: the benchmark model has no VAE)."""
    return OPDConfig.sd35_medium(
        teachers=teachers, prompt_tasks={t: 1.0 for t in teachers}, mar_anchor=anchor, beta_mar=0.02,
        batch_size=batch, group_size=1, train_batch_size=micro_batch, optimizer_steps_per_epoch=1,
        num_steps=steps, lora_rank=rank, lora_alpha=2.0 * rank, mixed_precision=mixed_precision, epochs=100,
        log_rewards=False, sample_every=0, ema=False, seed=seed)


class FullCopyOPDTrainer(OPDTrainer):
    """:class:`OPDTrainer` with the released code's layout: each teacher and the anchor is a full transformer
    (``pristine`` with the adapter merged, in ``copy_dtype``); the policy keeps only the student's LoRA.

    Args:
        pristine: an unadapted copy of the base transformer (float32), from which the copies are made.
        copy_dtype: the copies' dtype (the released code keeps them in float32).
    """

    def __init__(self, model: BenchFlowModel, cfg: OPDConfig, out_dir: str | Path, *, pristine: nn.Module,
                 copy_dtype: torch.dtype, accelerator: Accelerator | None = None):
        self.pristine, self.copy_dtype = pristine, copy_dtype
        self.copies: dict[str, BenchFlowModel] = {}
        super().__init__(model, cfg, out_dir, accelerator=accelerator, resume=False)
        self.pristine = None  # the copies are made: free it

    def load_teachers(self) -> dict[str, str]:
        names = super().load_teachers()
        for name in dict.fromkeys(names.values()):
            self.copies[name] = self.full_copy(name)
        return names

    def load_anchor(self) -> str | None:
        name = super().load_anchor()
        if name is not None and name not in self.copies:
            self.copies[name] = self.full_copy(name)
        return name

    def full_copy(self, adapter: str) -> BenchFlowModel:
        """A frozen copy of the base with ``adapter`` merged (``W0 + (alpha / r) B A``); the adapter is then
        removed from the policy."""
        transformer = copy.deepcopy(self.pristine)
        modules = dict(transformer.named_modules())
        with torch.no_grad():
            for qualified, layer in lora_layers(self.model).items():
                if adapter in layer.lora_A:
                    weight = modules[qualified].weight
                    weight.add_(layer.get_delta_weight(adapter).to(weight.device, weight.dtype))
        drop_adapter(self.model, adapter)
        # diffusers warns on every dtype cast with to() that the (empty) list of fp32 modules is kept: noise
        cast_log = logging.getLogger("diffusers.models.modeling_utils")
        level = cast_log.level
        cast_log.setLevel(logging.ERROR)
        try:
            transformer.to(self.model.device, self.copy_dtype).requires_grad_(False)
        finally:
            cast_log.setLevel(level)
        return BenchFlowModel(transformer, self.model.image_size, self.model.text_tokens)

    def teacher_velocity(self, teachers: list[str], x: torch.Tensor, sigma: float, cond: PromptEmbeds,
                         uncond: PromptEmbeds | None) -> torch.Tensor:
        """Each row's teacher copy, one forward per distinct teacher."""
        out = torch.empty_like(x, dtype=torch.float32)
        for name in dict.fromkeys(teachers):
            idx = [i for i, t in enumerate(teachers) if t == name]
            out[idx] = routed_velocity(self.copies[name], [None] * len(idx), x[idx], sigma, cond.subset(idx),
                                       None if uncond is None else uncond.subset(idx), self.guidance[name])
        return out

    def transition(self, adapter: str | None, roll: Rollout, idx: list[int], j: int,
                   guidance: float | None = None) -> SDEStep:
        """The anchor's transitions come from its copy; the student's (and the base's) from the policy."""
        held = self.copies.get(adapter) if adapter is not None else None
        if held is None:
            return super().transition(adapter, roll, idx, j, guidance)
        policy, self.model = self.model, held
        try:
            return super().transition(None, roll, idx, j, guidance)
        finally:
            self.model = policy


def held_modules(trainer: OPDTrainer) -> list[nn.Module]:
    """Every transformer a trainer holds: the policy (with its adapters) and any full copies."""
    copies = getattr(trainer, "copies", {})
    return [trainer.model.transformer, *(m.transformer for m in copies.values())]


def footprint(trainer: OPDTrainer) -> dict:
    """Counts and bytes of what the design holds (parameters and buffers as stored; no optimizer state)."""
    modules = held_modules(trainer)
    policy = trainer.model.transformer
    lora = [p for n, p in policy.named_parameters() if adapter_of_parameter(n) is not None]
    return {
        "transformers": len(modules),
        "adapters": adapter_names(trainer.model),
        "param_count": sum(p.numel() for m in modules for p in m.parameters()),
        "lora_param_count": sum(p.numel() for p in lora),
        "trainable_param_count": sum(p.numel() for p in trainer.params),
        "model_bytes": sum(module_bytes(m) for m in modules),
    }


def base_bytes(trainer: OPDTrainer) -> int:
    """Bytes of one base transformer as the trainer holds it: its weights (no LoRA) and buffers."""
    policy = trainer.model.transformer
    lora = sum(p.numel() * p.element_size() for n, p in policy.named_parameters()
               if adapter_of_parameter(n) is not None)
    return module_bytes(policy) - lora
