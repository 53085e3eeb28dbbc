"""Advantage Weighted Matching (arXiv 2509.25050): an advantage-weighted flow-matching loss on the policy's own
ODE samples, with pulls towards the base and an EMA (docs/method.md, "AWM").

``config`` (torch-free), ``loss`` and ``trainer``."""

from ..registry import Method, register_method
from .config import AWMConfig

METHOD = register_method(Method(
    kind="awm", config=AWMConfig, trainer="flowopd.methods.awm.trainer:train_awm",
    summary="Advantage Weighted Matching on one reward (a teacher) or several with weights: ODE rollouts, an "
            "advantage-weighted flow-matching loss on the policy's own samples.",
    example="flowopd train awm --config awm-prefer.json --out runs/awm-prefer\n"
            'with awm-prefer.json = {"rewards": {"prefer": 1.0}, "prompt_tasks": {"prefer": 1.0}, "epochs": 8}'))
