"""Flow-GRPO (arXiv 2505.05470): a teacher on one reward, or GRPO-Mix on several. SDE rollouts with log-probs,
group-normalised advantages, a clipped ratio, a KL to the base (docs/method.md, "GRPO").

``config`` (torch-free), ``loss`` (advantages, the clipped policy loss, the KL) and ``trainer``."""

from ..registry import Method, register_method
from .config import GRPOConfig

METHOD = register_method(Method(
    kind="grpo", config=GRPOConfig, trainer="flowopd.methods.grpo.trainer:train_grpo",
    summary="Flow-GRPO on one reward (a teacher) or several with weights (GRPO-Mix).",
    example="flowopd train grpo --config teacher-text.json --out runs/teacher-text\n"
            'with teacher-text.json = {"rewards": {"text": 1.0}, "prompt_tasks": {"text": 1.0}, "epochs": 40}\n'
            "on 4 GPUs: accelerate launch --num_processes 4 -m flowopd train grpo --config ... --out ..."))
