"""The memory tables of ``docs/sd35.md``, generated from the plan (a test keeps the page in step).

    .venv/bin/python -m flowopd.memplan.docs docs/sd35.md     # rewrite the block between the markers
"""

from __future__ import annotations

import sys
from pathlib import Path

from .cli import memory_plan
from .plan import STAGES

BEGIN, END = "<!-- memory-plan:begin (python -m flowopd.memplan.docs docs/sd35.md) -->", "<!-- memory-plan:end -->"
CASES = (("sd3.5-medium", 512, 22.0, "config"), ("sd3.5-medium", 512, 22.0, "auto"),
         ("sd3.5-medium", 1024, 40.0, "auto"), ("sd3.5-medium", 1024, 74.5, "auto"),
         ("sd3.5-large", 1024, 74.5, "auto"))


def tables() -> str:
    """One table per (model, resolution, GPU memory) case: each stage's micro-batch, decode chunk and terms."""
    out = []
    for model, resolution, gpu, micro in CASES:
        plan = memory_plan(model, resolution, "paper", list(STAGES), gpu_memory_gib=gpu, micro_batch=micro)
        how = "auto micro-batch" if micro == "auto" else "the preset's own micro-batch and decode chunk"
        out += [f"**{model}, {resolution} px, {gpu:g} GiB GPU** ({how}; {int(plan['margin'] * 100)} % "
                "kept free; text encoders cached)", "",
                "| stage | micro-batch | decode chunk | resident | activations | decode | **peak** | fits |",
                "|---|---|---|---|---|---|---|---|"]
        for s in plan["stages"]:
            t = s["terms"]
            resident = sum(v for k, v in t.items() if k not in ("activations", "decode"))
            out.append(f"| {s['stage']} | {s['micro_batch']} | {s['decode_chunk'] or '-'} | {resident:.1f} | "
                       f"{t['activations']:.1f} | {t['decode']:.1f} | **{s['peak_gib']:.1f}** | "
                       f"{'yes' if s['fits'] else 'no'} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def rewrite(page: str) -> str:
    """``page`` with the block between the markers replaced by :func:`tables`."""
    head, sep, rest = page.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"the page has no {BEGIN} ... {END} block")
    return f"{head}{BEGIN}\n{tables()}{END}{tail}"


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.write_text(rewrite(path.read_text()))
