"""DiffusionNFT (arXiv 2509.16117): a teacher trained on the forward process from CFG-free ODE rollouts, with
implicit positive and negative policies (docs/method.md, "DiffusionNFT").

``config`` (torch-free), ``loss`` and ``trainer``."""

from ..registry import Method, register_method
from .config import NFTConfig

METHOD = register_method(Method(
    kind="nft", config=NFTConfig, trainer="flowopd.methods.nft.trainer:train_nft",
    summary="DiffusionNFT on one reward (a teacher) or several with weights (NFT-Mix): ODE rollouts, trained on "
            "the forward process.",
    example="flowopd train nft --config nft-prefer.json --out runs/nft-prefer\n"
            'with nft-prefer.json = {"rewards": {"prefer": 1.0}, "prompt_tasks": {"prefer": 1.0}, "epochs": 8}'))
