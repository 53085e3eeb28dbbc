"""Count the activation memory of SD3.5 Medium's transformer in training, on a CPU: the plan's coefficients.

The whole 2.2 B-parameter transformer does not fit a CPU benchmark, but its blocks all have the real width
(1536, 24 heads of 64). So this builds slices of the real config of 1-3 blocks (with and without the
dual-attention ones), adds the student's LoRA (r 32, float32) on a bf16 base, runs one guided velocity (the
conditional and unconditional rows in one batch, as training does) and its backward, and takes the peak of
live tensor bytes, weights excluded (:func:`flowopd.memplan.count.slice_peak_bytes`), with and without
gradient checkpointing. Differences between slices give the per-token coefficients of
:mod:`flowopd.memplan.families`; the 3-block slice checks the fit.

    .venv/bin/python benchmarks/activation_bytes.py --json docs/sd35-activations.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from flowopd.bench.model import SD35_MEDIUM_TRANSFORMER
from flowopd.memplan.count import slice_peak_bytes
from flowopd.memplan.families import MEDIUM, TEXT_TOKENS

KIB = 1024
SLICES = ((1, 0), (1, 1), (2, 1), (2, 2), (3, 3))  # (blocks, of them dual-attention)


def fit(peaks: dict[tuple[int, int], int], image: int, checkpointing: bool) -> dict[str, float]:
    """Per-token, per-sequence coefficients in KiB from the slices' peaks (one guided image = 2 sequences)."""
    tokens = image + TEXT_TOKENS
    per = {k: v / 2 for k, v in peaks.items()}
    dual = (per[(1, 1)] - per[(1, 0)]) / image  # a dual block's second attention, per image token
    if checkpointing:
        # The backward recomputes one block at a time, the costliest (a dual one) after the later blocks' inputs
        # are freed, so slices cannot separate a block's kept input: it is the block's hidden and context rows
        # in bf16, width x 2 bytes a token. The 1-block slice holds the rest, one recomputed block and one input.
        block = MEDIUM.width * 2
        return {"rest": per[(1, 0)] / tokens / KIB, "block_input": block / KIB, "dual_extra": dual / KIB}
    block = (per[(2, 1)] - per[(1, 1)]) / tokens  # one more joint block's saved activations
    return {"rest": (per[(1, 0)] / tokens - block) / KIB, "joint": block / KIB, "dual_extra": dual / KIB}


def predicted(coeffs: dict[str, float], layers: int, dual: int, image: int, checkpointing: bool) -> float:
    """Bytes of a guided image on a ``layers``-block slice by the formula."""
    tokens = image + TEXT_TOKENS
    if checkpointing:
        per = (tokens * (coeffs["rest"] + (layers - 1) * coeffs["block_input"])
               + image * coeffs["dual_extra"] * (dual > 0))
    else:
        per = tokens * (coeffs["rest"] + layers * coeffs["joint"]) + image * dual * coeffs["dual_extra"]
    return 2 * per * KIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=512, help="image side of the counted slices")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    image = MEDIUM.image_tokens(args.resolution)
    report: dict = {"dtype": "bfloat16", "lora": "r 32 on the attention projections, float32",
                    "counted_at_px": args.resolution, "text_tokens": TEXT_TOKENS, "image_tokens": image,
                    "what": "peak live bytes of one guided image's velocity and backward, weights excluded"}
    for checkpointing in (False, True):
        key = "checkpointed" if checkpointing else "plain"
        peaks = {}
        for layers, dual in SLICES:
            start = time.perf_counter()
            peaks[(layers, dual)] = slice_peak_bytes(SD35_MEDIUM_TRANSFORMER, layers, dual, args.resolution,
                                                     dtype=torch.bfloat16, checkpointing=checkpointing)
            print(f"{key} {layers}-{dual}: {peaks[(layers, dual)] / 2**30:.3f} GiB "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        coeffs = fit(peaks, image, checkpointing)
        check = predicted(coeffs, 3, 3, image, checkpointing)
        report[key] = {"slices_bytes": {f"{a}-{b}": v for (a, b), v in peaks.items()}, "kib_per_token": coeffs,
                       "three_block_check": {"counted": peaks[(3, 3)], "formula": round(check),
                                             "ratio": round(check / peaks[(3, 3)], 4)}}
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
