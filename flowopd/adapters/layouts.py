"""Key layouts of SD3 LoRA files, as ComfyUI accepts them, mapped to the transformer's (diffusers) module names.

A key is ``<prefix><module>.<part>``; the part is the down (A, ``lora_A`` / ``lora_down``) or up (B, ``lora_B`` /
``lora_up``) weight, or a module's ``alpha`` scalar. The prefixes:

* ``transformer.`` (diffusers), ``base_model.model.`` (peft), none (this project's adapter folders);
* ``lora_transformer_`` (OneTrainer): the diffusers module path with ``_`` for ``.``;
* ``diffusion_model.`` / ``model.diffusion_model.`` (SD3's own checkpoint names) and ``lora_unet_`` (kohya's
  sd-scripts: the same names with ``_`` for ``.``). These name SD3's own modules: a joint block's fused ``qkv``
  projection becomes the three diffusers projections (its down weight shared, its up weight split by rows, an
  exact split of the update), ``proj`` the output projection, ``mlp.fc1/fc2`` the feed-forward layers.

Refused with the reason: text-encoder LoRAs (``lora_te*``, ``text_encoder*``), LyCORIS adapters (LoHa, LoKr,
LoCon's mid weight), DoRA magnitudes, and SD3 modules with no exact diffusers counterpart here (adaLN).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .registry import AdapterError

A, B, ALPHA = "lora_A", "lora_B", "alpha"
_PARTS = {"lora_A": A, "lora_down": A, "lora_B": B, "lora_up": B}
_WEIGHT = re.compile(r"^(?P<body>.+?)\.(?P<part>lora_A|lora_B|lora_down|lora_up)(?:\.[^.]+)?\.weight$")
_ALPHA = re.compile(r"^(?P<body>.+)\.alpha$")

_UNSUPPORTED = (
    (re.compile(r"^(lora_te\d*_|text_encoder|te\d?\.|text_encoders\.|clip_[lg]\.|t5xxl\.)"),
     "a text-encoder LoRA: only the transformer's LoRA can be imported (drop its text-encoder keys)"),
    (re.compile(r"(^|\.)(hada_|lokr_)"), "a LyCORIS LoHa/LoKr weight, not a LoRA: convert it to a plain LoRA first"),
    (re.compile(r"(^|\.)lora_mid\."), "a LoCon (Tucker) mid weight, not a plain LoRA"),
    (re.compile(r"(^|\.)(dora_scale|lora_magnitude_vector)"), "a DoRA magnitude: only plain LoRAs can be read"),
)

# SD3's own module names (its checkpoint, ComfyUI's diffusion_model.*) -> the diffusers modules they map to.
_NATIVE = (
    (r"joint_blocks\.(\d+)\.x_block\.attn\.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
    (r"joint_blocks\.(\d+)\.x_block\.attn\.proj", ("attn.to_out.0",)),
    (r"joint_blocks\.(\d+)\.x_block\.attn2\.qkv", ("attn2.to_q", "attn2.to_k", "attn2.to_v")),
    (r"joint_blocks\.(\d+)\.x_block\.attn2\.proj", ("attn2.to_out.0",)),
    (r"joint_blocks\.(\d+)\.context_block\.attn\.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
    (r"joint_blocks\.(\d+)\.context_block\.attn\.proj", ("attn.to_add_out",)),
    (r"joint_blocks\.(\d+)\.x_block\.mlp\.fc1", ("ff.net.0.proj",)),
    (r"joint_blocks\.(\d+)\.x_block\.mlp\.fc2", ("ff.net.2",)),
    (r"joint_blocks\.(\d+)\.context_block\.mlp\.fc1", ("ff_context.net.0.proj",)),
    (r"joint_blocks\.(\d+)\.context_block\.mlp\.fc2", ("ff_context.net.2",)),
)
_NATIVE_RE = tuple((re.compile(f"^{p}$"), targets) for p, targets in _NATIVE)
# The words of each layout's module paths, to put back the dots of an underscored name (longest word first).
_DIFFUSERS_WORDS = ("transformer_blocks", "ff_context", "norm1_context", "add_q_proj", "add_k_proj", "add_v_proj",
                    "to_add_out", "context_embedder", "proj_out", "norm_out", "time_text_embed",
                    "timestep_embedder", "text_embedder", "linear_1", "linear_2", "pos_embed", "to_out", "to_q",
                    "to_k", "to_v", "attn2", "attn", "norm1", "linear", "net", "proj", "ff")
_NATIVE_WORDS = ("joint_blocks", "context_block", "adaLN_modulation", "x_block", "attn2", "attn", "qkv", "proj",
                 "mlp", "fc1", "fc2", "final_layer", "context_embedder", "x_embedder", "t_embedder", "y_embedder")


class LayoutError(AdapterError):
    """A LoRA key that no supported layout reads, with what it is and what to do."""


@dataclass(frozen=True)
class ParsedKey:
    """A file key: its layout, the diffusers modules it stands for (three for a fused qkv), its part."""

    layout: str
    modules: tuple[str, ...]
    part: str  # lora_A | lora_B | alpha


def dotted(name: str, words: tuple[str, ...]) -> str:
    """``transformer_blocks_0_attn_to_out_0`` -> ``transformer_blocks.0.attn.to_out.0`` (longest words first).

    >>> dotted("transformer_blocks_3_ff_context_net_0_proj", _DIFFUSERS_WORDS)
    'transformer_blocks.3.ff_context.net.0.proj'
    """
    parts, rest = [], name
    while rest:
        digits = re.match(r"^\d+", rest)
        word = digits.group() if digits else next((w for w in sorted(words, key=len, reverse=True)
                                                   if rest == w or rest.startswith(w + "_")), None)
        if word is None:
            raise LayoutError(f"cannot read the module path {name!r} (at {rest!r}): not a module of SD3's transformer")
        parts.append(word)
        rest = rest[len(word):].removeprefix("_")
    return ".".join(parts)


def native_modules(native: str) -> tuple[str, ...]:
    """The diffusers modules of an SD3 checkpoint module name (three for a fused qkv)."""
    for pattern, targets in _NATIVE_RE:
        m = pattern.match(native)
        if m:
            return tuple(f"transformer_blocks.{m.group(1)}.{t}" for t in targets)
    raise LayoutError(f"SD3 module {native!r} has no exact counterpart here (the attention's qkv and proj and the "
                      "feed-forward fc1/fc2 of the joint blocks can be imported): drop its keys or retrain without it")


def parse_key(key: str) -> ParsedKey:
    """The layout, modules and part of one key.

    Raises:
        LayoutError: a refused kind of adapter (text encoder, LyCORIS, DoRA) or a key of no known layout.
    """
    for pattern, what in _UNSUPPORTED:
        if pattern.search(key):
            raise LayoutError(f"key {key!r} is {what}")
    m = _WEIGHT.match(key) or _ALPHA.match(key)
    if m is None:
        raise LayoutError(f"key {key!r} is not a LoRA down/up weight (lora_A/lora_B, lora_down/lora_up) or alpha")
    body, part = m["body"], _PARTS.get(m.groupdict().get("part") or "", ALPHA)
    if body.startswith("base_model.model."):
        return ParsedKey("peft", (body[len("base_model.model."):],), part)
    if body.startswith("transformer."):
        return ParsedKey("diffusers", (body[len("transformer."):],), part)
    if body.startswith("lora_transformer_"):
        return ParsedKey("onetrainer", (dotted(body[len("lora_transformer_"):], _DIFFUSERS_WORDS),), part)
    if body.startswith("lora_unet_"):
        return ParsedKey("kohya", native_modules(dotted(body[len("lora_unet_"):], _NATIVE_WORDS)), part)
    for prefix in ("model.diffusion_model.", "diffusion_model."):
        if body.startswith(prefix):
            return ParsedKey("native", native_modules(body[len(prefix):]), part)
    if body.startswith("joint_blocks."):
        return ParsedKey("native", native_modules(body), part)
    return ParsedKey("flowopd", (body,), part)
