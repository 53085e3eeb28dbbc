"""Count the activations SD3.5 Medium's transformer keeps for the student's backward, on a CPU.

The whole 2.2 B-parameter transformer does not fit a CPU benchmark, but its blocks all have the real width
(1536, 24 heads of 64). So this builds 1-, 2- and 3-block slices of the real config (``flowopd.bench.model``),
adds the student's LoRA (r 32 on the paper's attention projections, float32) on a base in ``--dtype``, runs one
guided velocity (CFG: the conditional and unconditional rows in one batch, as training does) with gradients,
and sums the bytes of the tensors autograd saves (``torch.autograd.graph.saved_tensors_hooks``; one count per
storage, parameters excluded). Differences between the slices give the bytes per token of a joint block, the
extra bytes per image token of a dual-attention block, and the rest (embeddings, the last block, the output).

It counts what is saved, not a GPU's allocator: backward's transient buffers and fragmentation come on top,
and GPU attention kernels save about what the CPU's flash kernel saves (q, k, v, the output, log-sum-exp).

    .venv/bin/python benchmarks/activation_bytes.py --dtype bfloat16 --json docs/sd35-activations.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from diffusers import SD3Transformer2DModel

from flowopd.adapters import add_lora, trainable_parameters, use_adapter
from flowopd.bench.model import SD35_MEDIUM_TRANSFORMER, SHAPES, BenchFlowModel

KIB = 1024


def saved_bytes(layers: int, dual: int, resolution: int, dtype: torch.dtype) -> int:
    """Bytes autograd saves for one guided student velocity of one image on a ``layers``-block slice."""
    cfg = dict(SD35_MEDIUM_TRANSFORMER, num_layers=layers, dual_attention_layers=tuple(range(dual)))
    torch.manual_seed(0)
    model = BenchFlowModel(SD3Transformer2DModel(**cfg).eval(), resolution, SHAPES["sd35-medium"].text_tokens)
    add_lora(model, "student", 32, 64.0)
    trainable_parameters(model, "student")
    for name, p in model.transformer.named_parameters():  # as flowopd.training.dist.prepare_model casts
        p.data = p.data.float() if "lora_" in name else p.data.to(dtype)
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.nn.Parameter):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    x = torch.randn(1, *model.latent_shape)
    cond, uncond = model.encode_prompts(["a photo"]), model.encode_prompts([""])
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), use_adapter(model, "student"):
        model.velocity(x, 0.5, cond, uncond, 4.5)
    return sum(storages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="bfloat16")
    parser.add_argument("--resolution", type=int, default=512, help="image side of the counted slices")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    res, text = args.resolution, SHAPES["sd35-medium"].text_tokens
    image = (res // 16) ** 2
    rows = 2  # CFG: one conditional and one unconditional sequence per image
    one, two, three = (saved_bytes(n, 0, res, dtype) for n in (1, 2, 3))
    two_dual = saved_bytes(2, 1, res, dtype)
    joint = (three - two) / (rows * (image + text))  # per token of a (non-dual, non-last) joint block
    dual = (two_dual - two) / (rows * image)  # extra per image token of a dual-attention block
    rest = one / (rows * (image + text))  # embeddings, the last block and the output, per token
    cfg = SD35_MEDIUM_TRANSFORMER
    n_dual, n_joint = len(cfg["dual_attention_layers"]), cfg["num_layers"] - 1

    def per_sequence(resolution: int) -> float:
        img = (resolution // 16) ** 2
        return (img + text) * (n_joint * joint + rest) + img * n_dual * dual

    out = {"dtype": args.dtype, "lora": "r 32 on the attention projections, float32", "counted_at_px": res,
           "text_tokens": text, "slices_bytes": {"1": one, "2": two, "3": three, "2_with_dual": two_dual},
           "joint_block_kib_per_token": joint / KIB, "dual_extra_kib_per_image_token": dual / KIB,
           "rest_kib_per_token": rest / KIB,
           "gib_per_sequence": {str(r): per_sequence(r) / 2**30 for r in (512, 1024)},
           "gib_per_cfg_image": {str(r): 2 * per_sequence(r) / 2**30 for r in (512, 1024)}}
    text_out = json.dumps(out, indent=1)
    print(text_out)
    if args.json:
        Path(args.json).write_text(text_out + "\n")


if __name__ == "__main__":
    main()
