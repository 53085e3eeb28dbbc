"""Copy the adapters of one seed of a reproduce run into the package's built-in examples.

    .venv/bin/python benchmarks/build_examples.py /work/examples/run/seed0 --commit 6843873

Reads ``SEED_DIR/<stage>/adapter`` and ``SEED_DIR/<stage>/result.json`` of the stages below (a stage counts
as finished when its result.json has metrics), copies only the adapter files (``adapter.json`` and the LoRA
weights, a few hundred KB each) to ``flowopd_studio/examples/<stage>/`` and writes ``examples.json`` with
where each comes from and its evaluation. Unfinished stages are left out and named; ``--require-all`` makes
that an error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowopd.adapters import META_NAME, WEIGHTS_NAME, read_adapter_metadata  # noqa: E402
from flowopd.layout import ADAPTER_DIR, RESULT_FILE  # noqa: E402
from flowopd_studio.services.examples import EXAMPLES_DIR, Example, load_examples, write_manifest  # noqa: E402

# stage -> (kind, task)
STAGES = {"teacher-compose": ("teacher", "compose"), "teacher-text": ("teacher", "text"),
          "teacher-prefer": ("teacher", "prefer"), "teacher-quality": ("teacher", "quality"),
          "coldstart-merge": ("coldstart", None), "opd": ("student", None)}


def describe(seed_dir: Path, stage: str, commit: str | None) -> str:
    budget = "default"
    for name in ("variant.json", "config.json"):  # an experiment's variant, else the reproduce folder's config
        file = seed_dir.parent / name
        if file.is_file():
            budget = json.loads(file.read_text()).get("budget", budget)
            break
    seed = seed_dir.name.removeprefix("seed")
    where = f" (flowopd commit {commit})" if commit else ""
    return f"reproduce {budget} budget, seed {seed}, stage {stage}{where}"


def build(seed_dir: Path, dest: Path, commit: str | None = None, require_all: bool = False) -> list[Example]:
    """Copy the finished stages of ``seed_dir`` to ``dest`` and write its manifest; returns the examples."""
    examples, missing = [], []
    for stage, (kind, task) in STAGES.items():
        result_file, adapter = seed_dir / stage / RESULT_FILE, seed_dir / stage / ADAPTER_DIR
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        if not result.get("metrics") or not (adapter / WEIGHTS_NAME).is_file():
            missing.append(stage)
            continue
        read_adapter_metadata(adapter)  # refuses a folder that is not an adapter
        target = dest / stage
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in (WEIGHTS_NAME, META_NAME):
            shutil.copy2(adapter / name, target / name)
        metrics = {k: round(float(v), 4) for k, v in result["metrics"].items()}
        examples.append(Example(stage, kind, task, target.resolve(), describe(seed_dir, stage, commit), metrics,
                                dict(result.get("config") or {})))
    if missing and require_all:
        raise SystemExit(f"stages not finished in {seed_dir}: {', '.join(missing)}")
    if missing:
        print(f"left out (not finished): {', '.join(missing)}")
    write_manifest(examples, dest)
    load_examples(dest)  # the manifest written reads back
    return examples


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("seed_dir", type=Path, help="a reproduce seed folder, e.g. OUT/seed0")
    p.add_argument("--dest", type=Path, default=EXAMPLES_DIR, help="examples folder (default: the package's)")
    p.add_argument("--commit", help="the flowopd commit the run was made with, named in each example's source")
    p.add_argument("--require-all", action="store_true", help="fail unless all six stages are finished")
    args = p.parse_args(argv)
    examples = build(args.seed_dir, args.dest, args.commit, args.require_all)
    size = sum(f.stat().st_size for e in examples for f in e.adapter.iterdir()) / 1024
    print(f"{len(examples)} examples ({size:.0f} KB) in {args.dest}: {', '.join(e.name for e in examples)}")


if __name__ == "__main__":
    main()
