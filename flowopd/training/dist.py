"""``accelerate`` plumbing for the trainers: the accelerator, model placement, and cross-process reductions.

The student's gradients are averaged with one all-reduce per optimizer step (:func:`allreduce_mean`) instead
of wrapping the transformer in DDP: the model is shared by several adapters and reached through
``FlowModel.velocity``, and a LoRA's gradients are small. With one process every helper is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from ..adapters import adapter_of_parameter
from ..models.base import FlowModel

log = logging.getLogger(__name__)

DTYPES = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def make_accelerator(accelerator: Accelerator | None = None) -> Accelerator:
    """The given accelerator, else a new one (one process, or what ``accelerate launch`` set up)."""
    if accelerator is not None:
        return accelerator
    acc = Accelerator()
    log.info("accelerate: process %d of %d on %s", acc.process_index, acc.num_processes, acc.device)
    return acc


def prepare_model(model: FlowModel, accelerator: Accelerator, mixed_precision: str = "no") -> None:
    """Move the model to the accelerator's device; with fp16/bf16, cast the frozen base (not the LoRAs).

    LoRA weights stay fp32 (peft casts a layer's input to its adapter's dtype), so the student's updates keep
    their precision while the base, which never trains, halves its memory.
    """
    if model.device != accelerator.device:
        model.to(accelerator.device)
    cast_base(model, mixed_precision)


def cast_base(model: FlowModel, mixed_precision: str = "no") -> None:
    """With fp16/bf16, cast the frozen base's parameters (not the LoRAs', which stay fp32) and its position table;
    "no" leaves it."""
    if mixed_precision not in DTYPES:
        raise ValueError(f"unknown mixed_precision {mixed_precision!r}: use one of {', '.join(DTYPES)}")
    dtype = DTYPES[mixed_precision]
    if dtype is not None:
        # Pin the base's id before the cast: a bf16 copy fingerprints differently, and the adapters saved
        # here must load onto the same base in full precision later.
        model.pin_model_id()
    for module in model.modules().values():
        for name, p in module.named_parameters():
            if adapter_of_parameter(name) is not None:
                p.data = p.data.float()
            elif dtype is not None and p.is_floating_point():
                p.data = p.data.to(dtype)
        if dtype is not None:  # the position table (SD3.5 Medium: 0.84 GiB in fp32) is added to half-precision
            for name, buf in list(module.named_buffers()):  # patch embeddings anyway: keep it in their dtype
                if name.endswith("pos_embed") and buf.is_floating_point() and buf.dtype != dtype:
                    owner, _, attr = name.rpartition(".")
                    setattr(module.get_submodule(owner) if owner else module, attr, buf.to(dtype))


def allreduce_mean(accelerator: Accelerator, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The element-wise mean over processes of each tensor (one flat all-reduce); as is with one process."""
    if accelerator.num_processes == 1 or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    flat = accelerator.reduce(flat, reduction="mean")
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].view_as(t).to(t.dtype))
        start += t.numel()
    return out


def any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True on every process when ``flag`` is True on any (e.g. a stop request seen by the main process)."""
    if accelerator.num_processes == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum").item() > 0)


def gather(accelerator: Accelerator, t: torch.Tensor) -> torch.Tensor:
    """[B, ...] on each process -> [P * B, ...] on every process, ordered by process index."""
    if accelerator.num_processes == 1:
        return t
    return accelerator.gather(t.contiguous().to(accelerator.device)).to(t.device)


class MetricSums:
    """Running sums and counts of named metrics, merged over processes by :meth:`means`.

    Processes may see different names (e.g. a task that only one of them sampled); merging handles that.
    """

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, name: str, values: torch.Tensor | float | Iterable[float]) -> None:
        """Add one value, or every element of a tensor [N] (NaNs are skipped: "not applicable")."""
        t = torch.as_tensor(values, dtype=torch.float64).detach().reshape(-1).cpu()
        t = t[~torch.isnan(t)]
        entry = self.sums.setdefault(name, [0.0, 0.0])
        entry[0] += float(t.sum())
        entry[1] += t.numel()

    def update(self, values: Mapping[str, torch.Tensor | float]) -> None:
        for name, v in values.items():
            self.add(name, v)

    def means(self, accelerator: Accelerator | None = None) -> dict[str, float]:
        """Mean of every metric over all its values on all processes (names seen nowhere are left out)."""
        parts = [self.sums]
        if accelerator is not None and accelerator.num_processes > 1:
            parts = gather_object([self.sums])
        total: dict[str, list[float]] = {}
        for part in parts:
            for name, (s, n) in part.items():
                entry = total.setdefault(name, [0.0, 0.0])
                entry[0] += s
                entry[1] += n
        return {name: s / n for name, (s, n) in sorted(total.items()) if n > 0}
