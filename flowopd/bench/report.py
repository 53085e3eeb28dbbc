"""The benchmark's short Markdown report: the setting, one row per design, the ratios and the goals."""

from __future__ import annotations

JSON_FILE = "bench-gpu.json"
MD_FILE = "bench-gpu.md"


def _gib(n: float) -> str:
    return f"{n / 2**30:.3f}" if n < 2**30 else f"{n / 2**30:.2f}"


def markdown(report: dict) -> str:
    """``report`` (:func:`flowopd.bench.gpu.run_bench`'s dict) as Markdown."""
    r = report
    lines = [
        "# flowopd bench gpu",
        "",
        f"{r['device_name']} ({r['device']}), {r['dtype']} base, {r['copy_dtype']} full copies; shape {r['shape']} "
        f"at {r['resolution']} px (latents {'x'.join(map(str, r['latent_shape']))}, {r['text_tokens']} text tokens); "
        f"{r['teachers']} teacher{'s' * (r['teachers'] != 1)} + anchor + student; "
        f"batch {r['batch']} (micro-batch {r['micro_batch']}), "
        f"{r['steps']} SDE steps ({r['trained_steps']} trained), LoRA r {r['lora_rank']}; "
        f"median of {r['iters']} timed iteration(s) after a warm-up.",
        "",
        f"Base transformer: {r['base_param_count'] / 1e6:.2f} M parameters, {_gib(r['base_bytes'])} GiB. "
        f"Memory: {r['memory_method']}.",
        "",
        "| design | transformers | adapters | parameters (M) | model memory (GiB) | x base | peak memory (GiB) "
        "| s / iteration | images/s | TFLOP/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, d in r["designs"].items():
        lines.append(f"| {name} | {d['transformers']} | {len(d['adapters'])} | {d['param_count'] / 1e6:.2f} | "
                     f"{_gib(d['model_bytes'])} | {d['model_vs_base']:.2f} | {_gib(d['peak_memory_bytes'])} | "
                     f"{d['seconds_per_iteration']:.3f} | {d['images_per_s']:.2f} | {d['tflops_per_s']:.3f} |")
    goals = r["goals"]
    met = {None: "not applicable here (sd35-medium on a GPU only)", True: "met", False: "not met"}[goals["met"]]
    lines += [
        "",
        f"Full copy / ours: {r['speedup']:.2f}x the time per iteration, {r['memory_ratio']:.2f}x the model memory.",
        f"Goals (ours at most {goals['model_vs_base_max']}x one base's memory, an iteration at least "
        f"{goals['speedup_min']}x faster than the full copy): {met}.",
        "",
        *[f"- {note}" for note in r["notes"]],
        "",
    ]
    return "\n".join(lines)
