"""Presets ``quick | default | paper`` for any registered config kind (the app's forms, scripts). Torch-free."""

from __future__ import annotations

from typing import Any

from .base import ConfigBase

__all__ = ["PRESET_NAMES", "QUICK_FIELDS", "STRONGEST_MERGE_WEIGHTS", "STRONGEST_SOURCES", "preset"]
PRESET_NAMES = ("quick", "default", "paper")
# The strongest teacher source of each task in the teacher benchmark on the tiny world (docs/notes/teachers-tiny.md):
# the `strong` reproduction budget's teachers and the whole pipeline's default. compose and quality gain little
# with any source (docs/notes/reward-ceiling.md); these are the best of what was measured.
STRONGEST_SOURCES: dict[str, str] = {"compose": "nft", "text": "sft", "prefer": "awm", "quality": "awm"}
# The merge init's weights of the four strongest-source teachers on the tiny world: more of the two that learn,
# text and prefer, than the equal 0.25s (the strong budget: docs/notes/weighted-merge.md; the whole pipeline:
# docs/notes/quick-pipeline.md). Measured with all four tasks only.
STRONGEST_MERGE_WEIGHTS: dict[str, float] = {"compose": 0.25, "text": 0.75, "prefer": 0.5, "quality": 0.25}
# ``quick``: a first teacher, cold start and student on a 2-core CPU in minutes. RL teachers: 8 epochs of 64 images
# (the reproduction's teacher budget, docs/results-tiny-grpo-teachers.md); the sft teacher 300 steps and the
# distillation 12 epochs, tuned for the whole pipeline's student within 10 minutes (docs/notes/quick-pipeline.md: from
# 150 steps and 8 epochs, +0.004 on seed 0 for 67 s more; with the merge weighted by STRONGEST_MERGE_WEIGHTS, +0.034
# +- 0.011 over the base on 5 seeds). Measured on the built-in tiny model on the 2-core machine, the whole pipeline of
# the strongest sources as the app's Distill tab queues it (benchmarks/quick_pipeline.py; real workers, nothing else
# running), seed 0: NFT compose 61 s, SFT text 51 s, AWM prefer and quality 78 and 76 s, the merge 6 s, the
# distillation 226 s; 8.1 min median from submit to the student. A GRPO teacher takes 99-123 s. Under load (1 thread,
# another process training) speeds halve.
QUICK_FIELDS: dict[str, dict[str, Any]] = {
    "grpo": dict(epochs=8, batch_size=64, group_size=4, train_batch_size=8, optimizer_steps_per_epoch=2, lr=1e-3,
                 checkpoint_every=2, sample_every=2),
    "opd": dict(epochs=12, batch_size=64, group_size=4, train_batch_size=8, optimizer_steps_per_epoch=2, lr=1e-4,
                checkpoint_every=2, sample_every=2),
    "coldstart": dict(sft_steps=50, sft_batch_size=16, sft_samples_per_task=32),
    "sft": dict(steps=300, batch_size=16, checkpoint_every=50, sample_every=50),
    # NFT (flowopd.methods.nft.config): the teachers' size; NFT's ODE rollouts cost less per image than GRPO's SDE.
    "nft": dict(epochs=8, batch_size=64, group_size=4, train_batch_size=8, optimizer_steps_per_epoch=2, lr=1e-3,
                checkpoint_every=2, sample_every=2),
    # AWM (flowopd.methods.awm.config): NFT's size (the same ODE rollouts and forward-process training).
    "awm": dict(epochs=8, batch_size=64, group_size=4, train_batch_size=8, optimizer_steps_per_epoch=2, lr=1e-3,
                checkpoint_every=2, sample_every=2),
}


def preset(kind: str, name: str = "default", **overrides: Any) -> ConfigBase:
    """The ``kind`` config (``grpo``, ``opd``, ``coldstart``, or any registered kind) of preset ``name``.

    ``quick``: minutes on a 2-core CPU (:data:`QUICK_FIELDS`; a kind without an entry gets its defaults);
    ``default``: the config's defaults (the tiny world's tuned values); ``paper``: the class's ``sd35_medium()``
    (the paper's SD3.5 Medium settings). ``overrides`` (any field) apply last.

    Example:
        >>> preset("grpo", "quick").epochs
        8
    """
    from .base import config_class

    cls = config_class(kind)
    if name not in PRESET_NAMES:
        raise ValueError(f"preset {name!r} is unknown: use one of {', '.join(PRESET_NAMES)}")
    if name == "paper":
        if not hasattr(cls, "sd35_medium"):
            raise ValueError(f"the {kind} config has no paper preset: use quick or default")
        return cls.sd35_medium(**overrides)
    values = dict(QUICK_FIELDS.get(kind, {})) if name == "quick" else {}
    return cls(**{**values, **overrides})
