"""The SD3.5 model families the memory plan knows: parameter counts and the activation coefficients.

Parameter counts are those of the real configs, built on the meta device (``tests/memplan`` recounts them).
The activation coefficients are bytes per token, counted by :func:`flowopd.memplan.count.slice_peak_bytes` on
1-3-block slices of SD3.5 Medium's real width (1536) at 512 px with a bf16 base and an fp32 r-32 LoRA
(``benchmarks/activation_bytes.py`` writes them to ``docs/sd35-activations.json``). SD3.5 Large's blocks are
wider (2432): its per-token coefficients are Medium's scaled by the width, since every tensor a block keeps is
tokens x (a multiple of the width); that scaling is an estimate, not a count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KIB = 1024

# Text encoders and VAE of SD3 (the same for Medium and Large), counted from their standard configs.
TEXT_ENCODER_PARAMS = {"clip_l": 123_650_304, "clip_g": 694_659_840, "t5_xxl": 4_762_310_656}
VAE_PARAMS = 83_819_683
TEXT_TOKENS = 77 + 128  # CLIP + T5 tokens (max_sequence_length 128)

# Counted peak bytes per token of one image's guided (CFG, two sequences) velocity and its backward, per
# sequence (halved), SD3.5 Medium at 512 px, bf16 base (``docs/sd35-activations.json``):
#   no checkpointing:  tokens x (rest + layers x joint) + image tokens x dual layers x dual_extra
#   checkpointing:     tokens x (rest + (layers - 1) x block_input) + image tokens x dual_extra (if any dual)
# where the checkpointed rest holds one recomputed block and one kept input, and block_input is a block's kept
# hidden and context rows in bf16 (width x 2 bytes; the slices cannot separate it, see the benchmark).
MEDIUM_COEFFS_KIB = {
    "plain": {"rest": 29.774, "joint": 64.829, "dual_extra": 60.790},
    "checkpointed": {"rest": 92.777, "block_input": 3.000, "dual_extra": 60.790},
}


@dataclass(frozen=True)
class Family:
    """One model family: its transformer's size and shape.

    Attributes:
        transformer_params: parameters of the transformer.
        width: hidden size (heads x 64).
        layers: transformer blocks; ``dual_layers`` of them have a second (image-only) attention.
        pos_table: values of the fp32 position-embedding buffer (``pos_embed_max_size``² x width).
        lora_projections: attention projections the paper's LoRA adapts (all width x width).
        default_resolution: the resolution the family was trained at.
    """

    name: str
    transformer_params: int
    width: int
    layers: int
    dual_layers: int
    pos_table: int
    lora_projections: int
    default_resolution: int
    patch: int = 2
    text_encoder_params: dict[str, int] = field(default_factory=lambda: dict(TEXT_ENCODER_PARAMS))
    vae_params: int = VAE_PARAMS

    def lora_params(self, rank: int) -> int:
        """Parameters of one LoRA of ``rank`` on the attention projections (A: r x w, B: w x r)."""
        return self.lora_projections * rank * 2 * self.width

    def coefficient(self, checkpointing: bool, name: str) -> float:
        """A per-token activation coefficient in bytes, scaled from Medium's count by the width."""
        table = MEDIUM_COEFFS_KIB["checkpointed" if checkpointing else "plain"]
        return table[name] * KIB * self.width / MEDIUM.width

    def image_tokens(self, resolution: int) -> int:
        """Image tokens of a ``resolution``-pixel image (VAE factor 8, then the patch)."""
        return (resolution // (8 * self.patch)) ** 2


def lora_projections(layers: int, dual: int) -> int:
    """to_q/k/v/out and add_q/k/v per block, to_add_out in all but the last (context_pre_only), attn2's four
    in the dual blocks."""
    return layers * 4 + layers * 3 + (layers - 1) + dual * 4


MEDIUM = Family("sd3.5-medium", transformer_params=2_243_171_520, width=1536, layers=24, dual_layers=13,
                pos_table=384 * 384 * 1536, lora_projections=lora_projections(24, 13), default_resolution=512)
LARGE = Family("sd3.5-large", transformer_params=8_056_627_520, width=2432, layers=38, dual_layers=0,
               pos_table=192 * 192 * 2432, lora_projections=lora_projections(38, 0), default_resolution=1024)
FAMILIES = {f.name: f for f in (MEDIUM, LARGE)}
