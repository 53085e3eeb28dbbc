"""Cold start by model merging (docs/method.md, "Cold start"): the student's first LoRA from the teachers' LoRAs.

Modes:

* ``cat`` (default, exact): concatenate the factors along the rank, ``A = [A_1; ...; A_K]`` and
  ``B = [c_1 B_1, ..., c_K B_K]`` with ``c_k = w_k s_k / s_new`` (``s = alpha / r``), so that
  ``s_new B A = sum_k w_k s_k B_k A_k``: the merged weight delta is exactly the weighted sum of the
  teachers'. The rank is ``sum_k r_k``; teachers of different ranks are fine. Teachers on different layers
  (e.g. a full student, :mod:`flowopd.adapters.full`) merge on the union of their layers, each layer's rank
  the sum of the ranks there (peft's ``rank_pattern`` when they differ by layer).
* ``svd``: the same sum ``Delta W``, truncated to rank ``rank`` by SVD (exact when ``rank`` >= the rank of
  ``Delta W``, else its best rank-``rank`` approximation). The singular values are split evenly between
  B and A so both factors have the same scale for the student's further training.
* ``avg``: the released code's ``scripts/merge.py``: element-wise weighted average of the A's and of the
  B's separately. The delta is ``(sum w_k B_k)(sum w_k A_k)``, which is *not* the average delta (its cross
  terms ``B_j A_k`` mix unrelated teachers); kept for fidelity. Needs equal ranks and alphas.

peft's ``LoraModel.add_weighted_adapter`` implements ``cat``/``svd``, but it is a method of peft's
``LoraModel`` wrapper, which diffusers' ``add_adapter`` (``inject_adapter_in_model``) does not create, so the
merge is done here, on the LoRA layers directly. The new adapter keeps the first teacher's alpha / r
scaling (``alpha`` overrides it), so the student trains at the teachers' learning-rate scale.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from ..adapters import AdapterError, adapter_names, add_lora_by_layer, lora_layers
from ..models.base import FlowModel

log = logging.getLogger(__name__)

MERGE_MODES = ("cat", "svd", "avg")


def _config(model: FlowModel, name: str):
    return model.transformer.peft_config[name]


def _scale(model: FlowModel, name: str) -> float:
    cfg = _config(model, name)
    return float(cfg.lora_alpha) / int(cfg.r)


def _layers_of(model: FlowModel, names: Sequence[str]) -> dict[str, list[str]]:
    """LoRA layer -> the adapters of ``names`` that adapt it (layers none of them adapts are left out)."""
    out = {}
    for layer, module in lora_layers(model).items():
        present = [n for n in names if n in module.lora_A]
        if present:
            out[layer] = present
    return out


def _check(model: FlowModel, names: Sequence[str], weights: Sequence[float], new_name: str, mode: str) -> None:
    if mode not in MERGE_MODES:
        raise ValueError(f"unknown merge mode {mode!r}: use one of {', '.join(MERGE_MODES)}")
    if not names:
        raise ValueError("merge_adapters needs at least one adapter name")
    if len(weights) != len(names):
        raise ValueError(f"got {len(weights)} weights for {len(names)} adapters: pass one weight per adapter")
    missing = [n for n in names if n not in adapter_names(model)]
    if missing:
        raise AdapterError(f"adapters {missing} are not on the model: adapters are {adapter_names(model) or 'none'}")
    if new_name in adapter_names(model):
        raise AdapterError(f"adapter {new_name!r} already exists: merge into a new name")
    layers = _layers_of(model, names)
    if mode == "avg" and len({tuple(v) for v in layers.values()}) > 1:
        narrow = sorted({n for v in layers.values() for n in names if n not in v})
        raise AdapterError(f"the element-wise A/B average (merge-avg) needs adapters on the same layers, and "
                           f"{narrow} lack some: use the exact merge (cold-start mode 'merge'), which takes the "
                           "union of their layers")
    if mode == "avg":
        ranks = {n: (int(_config(model, n).r), float(_config(model, n).lora_alpha)) for n in names}
        if len(set(ranks.values())) > 1:
            raise AdapterError(f"the element-wise A/B average (cold-start mode 'merge-avg', merge mode 'avg') "
                               f"needs equal rank and alpha, got "
                               f"{ {n: f'r={r}, alpha={a:g}' for n, (r, a) in ranks.items()} }: use the exact "
                               "merge (cold-start mode 'merge', merge mode 'cat'), which handles any ranks")


def delta_weight(model: FlowModel, name: str, layer: str) -> torch.Tensor:
    """``Delta W = (alpha / r) B A`` [out, in] of adapter ``name`` at LoRA layer ``layer`` (fp32)."""
    module = lora_layers(model)[layer]
    a = module.lora_A[name].weight.float()
    b = module.lora_B[name].weight.float()
    return module.scaling[name] * b @ a


@torch.no_grad()
def merge_adapters(model: FlowModel, names: Sequence[str], weights: Sequence[float], new_name: str, *,
                   mode: str = "cat", rank: int | None = None, alpha: float | None = None) -> str:
    """Add adapter ``new_name`` merged from adapters ``names`` with ``weights`` (see the module docstring).

    Args:
        names: teacher adapter names; on different layers, the merge adapts the union of them (``cat`` and
            ``svd``: a teacher adds nothing to a layer it lacks).
        weights: one weight per teacher, e.g. ``[1/3, 1/3, 1/3]`` for the average delta.
        mode: ``cat`` | ``svd`` | ``avg``.
        rank: the rank for ``svd`` (default: the largest teacher rank); ignored by the other modes.
        alpha: LoRA alpha of the new adapter (default: keep the first teacher's alpha / r).

    Returns:
        ``new_name``; the adapter is frozen and inactive, as :func:`flowopd.adapters.add_lora` leaves it.
    """
    _check(model, names, weights, new_name, mode)
    layers, modules = _layers_of(model, names), lora_layers(model)
    ranks = [int(_config(model, n).r) for n in names]
    if mode == "cat":  # per layer, the ranks of the adapters on it (per-layer ranks of each adapter included)
        layer_ranks = {ly: sum(modules[ly].lora_A[n].weight.shape[0] for n in present)
                       for ly, present in layers.items()}
    elif mode == "svd":
        new_rank = int(rank) if rank is not None else max(ranks)
        if new_rank < 1:
            raise ValueError(f"svd rank must be >= 1, got {rank}")
        layer_ranks = dict.fromkeys(layers, new_rank)
    else:
        layer_ranks = dict.fromkeys(layers, ranks[0])
    new_rank = max(layer_ranks.values())
    s_new = float(alpha) / new_rank if alpha is not None else _scale(model, names[0])
    targets = {tuple(sorted(_config(model, n).target_modules)) for n in names}
    # the teachers' own targets when they agree (the usual case), else the union of their layers by full name
    add_lora_by_layer(model, new_name, layer_ranks, s_new, targets.pop() if len(targets) == 1 else None)
    for layer_name, present in layers.items():
        module = modules[layer_name]
        a_new, b_new = module.lora_A[new_name].weight, module.lora_B[new_name].weight  # [r, in], [out, r]
        kept = [(n, w) for n, w in zip(names, weights) if n in present]  # a teacher without the layer adds 0
        a_k = [module.lora_A[n].weight.float() for n, _ in kept]
        b_k = [module.lora_B[n].weight.float() for n, _ in kept]
        if mode == "cat":
            a = torch.cat(a_k, 0)
            b = torch.cat([w * module.scaling[n] / s_new * b for (n, w), b in zip(kept, b_k)], 1)
        elif mode == "avg":
            total = float(sum(weights))
            if total == 0:
                raise ValueError("mode 'avg' normalises the weights, which sum to 0: pass positive weights")
            a = sum(w / total * x for w, x in zip(weights, a_k))
            b = sum(w / total * x for w, x in zip(weights, b_k))
        else:
            delta = sum(w * delta_weight(model, n, layer_name) for n, w in kept)
            u, s, vh = torch.linalg.svd(delta, full_matrices=False)
            k = min(new_rank, s.shape[0])
            root = s[:k].sqrt()
            a = torch.zeros_like(a_new, dtype=torch.float32)
            b = torch.zeros_like(b_new, dtype=torch.float32)
            a[:k] = root[:, None] * vh[:k]  # rank beyond min(out, in) stays zero
            b[:, :k] = u[:, :k] * root[None] / s_new
        a_new.copy_(a.to(a_new.dtype))
        b_new.copy_(b.to(b_new.dtype))
    log.info("merged %s with weights %s into %s (mode %s, r=%d, alpha / r=%g)", list(names), list(weights),
             new_name, mode, new_rank, s_new)
    return new_name
