"""The benchmark's driver: every seed's plan, stage by stage, then ``results.json``, plots and ``report.md``.

Output folder::

    OUT/config.json          the ReproduceConfig
    OUT/seed<k>/<stage>/     each stage's checkpoint, adapter, curve, train.json and result.json
    OUT/results.json         the rows (mean and std over seeds), compute, wall time, seeds, machine
    OUT/details.json         per-seed metrics (seesaw runs included), per-stage compute and times
    OUT/plots/<stage>.png    training curves
    OUT/report.md            the tables, the claims and the curves

An interrupted benchmark continues where it stopped: finished stages are skipped and a trainer resumes from
its checkpoint.

Example::

    from flowopd.reproduce import ReproduceConfig, reproduce

    summary = reproduce(ReproduceConfig.preset("default", seeds=3), "runs/reproduce")
    print(summary["rows"]["opd"]["average"])
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import metric_names as names
from ..events import Scoped, TrainingCallback, begin
from ..layout import CONFIG_FILE, DETAILS_FILE, PLOTS_DIR, REPORT_FILE, RESULTS_FILE
from .config import LEGACY_VALUES, ReproduceConfig
from .plan import StageSpec, build_plan
from .stage import read_json, run_stage, write_json

log = logging.getLogger(__name__)


def plans(cfg: ReproduceConfig, out: str | Path) -> dict[int, list[StageSpec]]:
    """Seed -> its plan (every stage config is built and validated here, before anything runs)."""
    return {seed: build_plan(cfg, seed, Path(out) / f"seed{seed}") for seed in range(cfg.seeds)}


def check_folder(cfg: ReproduceConfig, out: Path) -> None:
    """Refuse a folder holding a benchmark of another config (only ``seeds`` may change: more seeds add to it).

    Raises:
        ValueError: naming the fields that differ.
    """
    path = out / CONFIG_FILE
    if not path.is_file():
        return
    stored, current = {**LEGACY_VALUES, **read_json(path)}, cfg.to_dict()
    changed = sorted(k for k in set(stored) | set(current) if k != "seeds" and stored.get(k) != current.get(k))
    if changed:
        raise ValueError(f"{out} holds a benchmark run with another config (fields {changed} differ): use another "
                         "--out folder, or the same config to continue it")


def runs(spec: StageSpec, seed: int) -> bool:
    """Whether the stage runs for ``seed``: not when it reuses another stage's run, and the base is evaluated
    for seed 0 only (nothing is trained and the protocol's seeds are fixed, so every seed would get the same)."""
    return not spec.same_as and not (spec.kind == "eval" and seed > 0)


def stage_count(cfg: ReproduceConfig) -> int:
    """How many stages the benchmark runs over all seeds (see :func:`runs`)."""
    plan = build_plan(cfg, 0, Path("."))
    return sum(1 for seed in range(cfg.seeds) for spec in plan if runs(spec, seed))


def reproduce(cfg: ReproduceConfig, out: str | Path, *, callback: TrainingCallback | None = None,
              accelerator=None, only_seed: int | None = None) -> dict:
    """Run (or continue) the benchmark into ``out``; returns the ``results.json`` dict.

    With ``only_seed`` it runs that seed's stages only (plus seed 0's base evaluation, which every seed's
    ``base`` row shares) and returns ``{"seed": k, "stages": {name: result}}`` without writing the report:
    seeds can run in parallel processes on one folder, and a final call without it gathers them.

    Args:
        callback: :mod:`flowopd.events`: the benchmark is a stage ``reproduce`` of one step per stage it
            runs; after each, ``stages_done`` and its evaluation as ``eval/<stage>/<metric>``. Every stage's
            own events (curves, samples, checkpoints) come through :class:`~flowopd.events.Scoped` as
            ``seed<k>/<stage>/<metric>``, a finished stage's curve replayed. ``should_stop`` is polled after
            every epoch and between stages; True stops the benchmark (the trainer's checkpoint is saved).
        accelerator: default: a new one-process ``accelerate.Accelerator``.
        only_seed: run one seed (0 <= only_seed < cfg.seeds) and skip the report (see above).

    Raises:
        ReproduceStopped: ``should_stop`` returned True; a later call continues.
        ValueError: a config override is invalid, or ``out`` holds stages run with another config.
    """
    from ..training.dist import any_process, make_accelerator
    from .stage import ReproduceStopped

    out = Path(out)
    if only_seed is not None and not (isinstance(only_seed, int) and 0 <= only_seed < cfg.seeds):
        raise ValueError(f"only_seed={only_seed!r} is invalid: use a seed from 0 to {cfg.seeds - 1} "
                         f"(--seeds {cfg.seeds})")
    by_seed = plans(cfg, out)
    check_folder(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG_FILE, cfg.to_dict())
    acc = make_accelerator(accelerator)
    if not acc.is_main_process:  # the main process alone reports; every process stops together
        callback = None
    total = stage_count(cfg) if only_seed is None else sum(1 for spec in by_seed[only_seed]
                                                           if runs(spec, only_seed))
    clock = begin(callback, "reproduce", total)
    results: dict[int, dict[str, dict]] = {}
    index = 0

    def scoped(seed: int, name: str) -> TrainingCallback | None:
        return None if callback is None else Scoped(callback, f"seed{seed}/{name}")

    try:
        for seed, plan in by_seed.items():
            if only_seed is not None and seed != only_seed:
                continue
            seed_dir = out / f"seed{seed}"
            done = results.setdefault(seed, {})
            for spec in plan:
                if spec.same_as:
                    done[spec.name] = done[spec.same_as]
                    continue
                if not runs(spec, seed) and 0 not in results:  # one seed alone: seed 0's base evaluation first
                    zero = next(s for s in by_seed[0] if s.name == spec.name)
                    results[0] = {spec.name: run_stage(zero, out / "seed0", cfg, acc, 0, scoped(0, spec.name))}
                if not runs(spec, seed):  # the base: seed 0's evaluation, its time counted once
                    done[spec.name] = {**results[0][spec.name], "seed": seed, "train_time_s": 0.0,
                                       "eval_time_s": 0.0, "wall_time_s": 0.0}
                    continue
                if any_process(acc, bool(callback is not None and callback.should_stop())):
                    raise ReproduceStopped(f"stopped before {spec.name} (seed {seed}); run again to continue")
                if callback is not None:
                    callback.on_progress(clock.progress(index, f"seed {seed} {spec.name}"))
                log.info("reproduce: seed %d, stage %s (%d/%d)", seed, spec.name, index + 1, total)
                done[spec.name] = run_stage(spec, seed_dir, cfg, acc, seed, scoped(seed, spec.name))
                index += 1
                if callback is not None:
                    metrics = done[spec.name].get("metrics") or {}
                    callback.on_metrics(index, {names.STAGES_DONE: float(index),
                                                **{f"eval/{spec.name}/{k}": v for k, v in metrics.items()}})
                    status = "skipped" if done[spec.name]["skipped"] else "done"
                    callback.on_progress(clock.progress(index, f"seed {seed} {spec.name} {status}"))
    except ReproduceStopped:
        if callback is not None:
            callback.on_end("reproduce", "stopped")
        raise
    if only_seed is not None:
        summary = {"seed": only_seed, "stages": results[only_seed]}
    else:
        summary = write_outputs(cfg, by_seed[0], results, out)
        if callback is not None:
            for name in (REPORT_FILE, RESULTS_FILE):
                callback.on_artifact(index, "report", out / name)
    if callback is not None:
        callback.on_end("reproduce", "finished")
    return summary


def write_outputs(cfg: ReproduceConfig, plan: list[StageSpec], results: dict[int, dict[str, dict]],
                  out: Path) -> dict:
    """Write ``results.json``, ``details.json``, the plots and ``report.md``; returns the results dict."""
    from .plots import plot_all
    from .report import render
    from .results import summarize

    summary, details = summarize(plan, results, cfg.to_dict())
    write_json(out / RESULTS_FILE, summary)
    write_json(out / DETAILS_FILE, details)
    curves = {spec.name: [results[seed][spec.name]["curve"] for seed in sorted(results)]
              for spec in plan if not spec.same_as and spec.kind != "eval"}
    plots = plot_all(curves, out / PLOTS_DIR)
    (out / REPORT_FILE).write_text(render(summary, details, plots, out))
    log.info("reproduce: wrote %s, %s and %d plots to %s", REPORT_FILE, RESULTS_FILE, len(plots), out)
    return summary
