"""What every training method shares: the epoch loop and its optimizer, LR schedule and EMA (``loop``, ``ema``),
the optimizer steps and divergence checks (``steps``), SDE and ODE rollouts with rewards (``rollout``), resumable
checkpoints (``checkpoint``) and a stop inside an epoch with its exact resume (``resume``), ``accelerate`` helpers
(``dist``), image sets for supervised losses (``image_sets``) and *sample now* previews (``preview``); the
``flowopd train`` and ``flowopd coldstart`` commands live in :mod:`flowopd.methods.cli`.

The methods themselves (GRPO, NFT, AWM, SFT, OPD) live in :mod:`flowopd.methods`, one folder each. Every
trainer runs under ``accelerate`` (one process by default; ``accelerate launch`` for several), keeps one frozen
base with named LoRA adapters (only the trained one has gradients), reports through a ``callback`` and saves
resumable checkpoints. This package imports nothing heavy itself, so ``flowopd --help`` stays fast.
"""
