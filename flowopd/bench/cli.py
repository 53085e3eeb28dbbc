"""``flowopd bench gpu``: the memory/speed benchmark of the two Stage-2 layouts from a terminal.

:func:`register` adds the command without importing torch; the handler imports the benchmark. Bad input
raises ``ValueError`` (``flowopd: error: ...``, exit status 2).
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)
DTYPE_NAMES = ("float32", "bfloat16", "float16")
EXAMPLE = ("flowopd bench gpu --device cuda --shape sd35-medium --dtype bfloat16 --resolution 512 --out bench/\n"
           "  on a CPU, in seconds (what the tests run): flowopd bench gpu --device cpu --shape tiny --out /tmp/b\n"
           "  on a lent GPU, 512 and 1024 px in one go: bash benchmarks/gpu_check.sh OUT")
DESCRIPTION = ("Time one Flow-OPD iteration (student SDE rollouts, routed teacher and anchor forwards, the student's "
               "forward/backward and optimizer step) on an SD3.5-Medium-shaped transformer with random weights "
               "(nothing is downloaded; no text encoders or VAE: the transformer-side cost), in our layout (one "
               "base, named LoRA adapters) and in the released code's (a full transformer per teacher and for the "
               "anchor), in one run: images/s, seconds per iteration, peak memory and achieved TFLOP/s. Writes "
               "OUT/bench-gpu.json and OUT/bench-gpu.md and prints the table.")


MEMORY_DESCRIPTION = ("For each training stage, build the SD3.5 family's transformer with random weights (bf16; or a "
                      "slice of its first blocks), its adapters and AdamW, run one training micro-batch with gradient "
                      "checkpointing, and compare the peak (torch.cuda.max_memory_allocated; on a CPU the peak of "
                      "live tensor bytes) with the memory plan's matching terms. Writes OUT/bench-memory.json.")
MEMORY_EXAMPLE = ("flowopd bench memory --model sd3.5-medium --resolution 512 --out gpu-check/memory\n"
                  "  a CPU smoke of the same path: flowopd bench memory --device cpu --layers 1 --resolution 128 "
                  "--stages grpo --out /tmp/m")


def cmd_bench_gpu(args: argparse.Namespace) -> None:
    import torch

    from .gpu import BenchOptions, run_bench
    from .report import MD_FILE

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.startswith("cuda")
    opts = BenchOptions(device=device, dtype=args.dtype or ("bfloat16" if on_gpu else "float32"),
                        copy_dtype=args.copy_dtype, shape=args.shape or ("sd35-medium" if on_gpu else "tiny"),
                        teachers=args.teachers, batch=args.batch, micro_batch=args.micro_batch, steps=args.steps,
                        resolution=args.resolution, lora_rank=args.lora_rank, iters=args.iters, seed=args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_bench(opts, args.out)
    with open(f"{args.out}/{MD_FILE}") as f:
        print(f.read(), end="")


def cmd_bench_memory(args: argparse.Namespace) -> None:
    import torch

    from ..memplan.families import FAMILIES
    from .memory import run

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    resolution = args.resolution or FAMILIES[args.model].default_resolution
    run(args.model, resolution, args.micro_batch, args.out, stages=tuple(args.stages), device=device,
        layers=args.layers)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench gpu`` to the ``flowopd`` command parser."""
    about = "Benchmarks of the library's training paths."
    bench = subparsers.add_parser("bench", help=about, description=about)
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    p = bsub.add_parser("gpu", help="Memory and speed of one OPD iteration: our adapters vs the released code's "
                                    "full model copies.", description=DESCRIPTION, epilog=f"example: {EXAMPLE}",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=cmd_bench_gpu)
    p.add_argument("--out", required=True, help="output folder for bench-gpu.json and bench-gpu.md")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available, else cpu)")
    p.add_argument("--dtype", choices=DTYPE_NAMES,
                   help="dtype of the frozen base (LoRA weights stay float32) (default: bfloat16 on cuda, else "
                        "float32)")
    p.add_argument("--copy-dtype", choices=DTYPE_NAMES,
                   help="dtype of the full-copy design's teacher and anchor copies (default: --dtype; the released "
                        "code keeps them in float32)")
    p.add_argument("--shape", choices=("tiny", "sd35-medium"),
                   help="transformer shape: sd35-medium is the real SD3.5 Medium config (2.5 B parameters), tiny a "
                        "miniature for CPUs (default: sd35-medium on cuda, else tiny)")
    p.add_argument("--teachers", type=int, default=3, help="number of teachers, 1 to 4 (default %(default)s)")
    p.add_argument("--batch", type=int, default=4,
                   help="images sampled and trained per iteration (default %(default)s)")
    p.add_argument("--micro-batch", type=int,
                   help="images per forward/backward micro-batch; must divide --batch (default: --batch)")
    p.add_argument("--steps", type=int, default=10,
                   help="SDE steps per rollout; 99%% of them train (default %(default)s)")
    p.add_argument("--resolution", type=int,
                   help="image side in pixels, a multiple of 16 (default: 512 for sd35-medium, 64 for tiny)")
    p.add_argument("--lora-rank", type=int, help="LoRA rank of every adapter (default: 32 for sd35-medium, 4 for tiny)")
    p.add_argument("--iters", type=int, default=1, help="timed iterations after the warm-up; the median is reported "
                                                        "(default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and adapters (default %(default)s)")
    p.add_argument("--threads", type=int, help="torch intra-op threads on the CPU (default: torch's choice)")
    from ..memplan.families import FAMILIES
    from ..memplan.plan import STAGES

    m = bsub.add_parser("memory", help="The memory plan against a measured training micro-batch, stage by stage.",
                        description=MEMORY_DESCRIPTION, epilog=f"example: {MEMORY_EXAMPLE}",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    m.set_defaults(func=cmd_bench_memory)
    m.add_argument("--out", required=True, help="output folder for bench-memory.json")
    m.add_argument("--model", choices=list(FAMILIES), default="sd3.5-medium", help="the family (default %(default)s)")
    m.add_argument("--resolution", type=int, help="image side in pixels (default: the family's)")
    m.add_argument("--micro-batch", type=int, default=1, help="images per forward/backward (default %(default)s)")
    m.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stages to measure (default all)")
    m.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    m.add_argument("--layers", type=int, help="a slice of the first N blocks (default: every block)")
    m.add_argument("--threads", type=int, help="torch intra-op threads on the CPU (default: torch's choice)")
