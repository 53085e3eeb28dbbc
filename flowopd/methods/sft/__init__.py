"""A supervised teacher: a fresh LoRA fine-tuned with the flow-matching loss on an image set with captions,
optionally with prior preservation on a regularization set (docs/method.md, "SFT").

``config`` (torch-free) and ``trainer`` (the loss is :mod:`flowopd.flow_matching`'s)."""

from ...layout import ADAPTER_DIR, CHECKPOINT_DIR, SFT_FILE
from ..registry import Flag, Method, register_method
from .config import SFTConfig

METHOD = register_method(Method(
    kind="sft", config=SFTConfig, trainer="flowopd.methods.sft.trainer:train_sft",
    summary="Fine-tune a LoRA with the flow-matching loss on an image set with captions: a supervised teacher "
            "(a style or subject LoRA, as kohya_ss and fluxgym train).",
    example="flowopd train sft --data data/text --out runs/sft-text --steps 600\n"
            "with data/text from: flowopd world dataset --task text --n 256 --out data/text\n"
            "keeping the base elsewhere (prior preservation): add --reg-data data/reg, with data/reg from\n"
            "  flowopd world dataset --task compose,prefer,quality --n 256 --source model --out data/reg",
    outputs=(CHECKPOINT_DIR, ADAPTER_DIR, SFT_FILE), folder_fields=("data", "reg_data"),
    flags=(Flag("data"), Flag("reg_data"), Flag("steps", int), Flag("batch_size", int), Flag("lr", float),
           Flag("prior_weight", float), Flag("lora_rank", int), Flag("lora_alpha", float), Flag("seed", int)),
    prepare=SFTConfig.require_data, preview="flowopd.methods.sft.trainer:preview",
    done="{epoch} passes over the set"))
