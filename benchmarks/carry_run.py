"""Carry an unfinished ``flowopd reproduce`` folder from one session's machine to the next.

The machine's disk outside the repository is not kept between sessions, so a benchmark longer than a
session is carried in the repository::

    python benchmarks/carry_run.py save OUT DEST    # OUT's config.json, every finished stage's result.json,
                                                    # the adapters that later stages load (teachers, cold
                                                    # starts), and each unfinished stage's last checkpoint
    python benchmarks/carry_run.py restore DEST     # back to the OUT it came from; then rerun the same
                                                    # `flowopd reproduce --out OUT ...` commands to continue

An unfinished stage resumes from its carried checkpoint (with its ``curve.jsonl``, which the stage cuts back
to the checkpoint's step); what it trained after that checkpoint runs again. Stage configs name the adapters
they load by absolute path, so OUT must be the same path on both machines: ``DEST/origin`` holds it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from flowopd.layout import ADAPTER_DIR, CHECKPOINT_DIR, CURVE_FILE, RESULT_FILE, TRAIN_FILE
from flowopd.reproduce.config import ReproduceConfig
from flowopd.reproduce.runner import plans


def loaded_adapters(out: Path) -> set[Path]:
    """Adapter folders that some stage's config loads (teachers, inits), for every seed of OUT's plan."""
    cfg = ReproduceConfig.from_json(out / "config.json")
    found = set()
    for plan in plans(cfg, out).values():
        for spec in plan:
            if spec.config is None:
                continue
            config = json.loads(spec.config.to_json())
            for value in [*(config.get("teachers") or {}).values(), config.get("init")]:
                if isinstance(value, str) and value.startswith(str(out)):
                    found.add(Path(value))
    return found


def save(out: Path, dest: Path) -> None:
    out = out.resolve()
    if not (out / "config.json").is_file():
        sys.exit(f"{out}/config.json is missing: OUT must be a flowopd reproduce --out folder")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "config.json", dest / "config.json")
    (dest / "origin").write_text(f"{out}\n")
    needed, stages, adapters = loaded_adapters(out), 0, 0
    for result in sorted(out.glob(f"seed*/*/{RESULT_FILE}")):
        rel = result.parent.relative_to(out)
        shutil.rmtree(dest / rel, ignore_errors=True)  # drops an earlier carry's checkpoint of this stage
        (dest / rel).mkdir(parents=True)
        shutil.copy(result, dest / rel / RESULT_FILE)
        stages += 1
        adapter = result.parent / ADAPTER_DIR
        if adapter in needed and adapter.is_dir():
            shutil.copytree(adapter, dest / rel / ADAPTER_DIR)
            adapters += 1
    unfinished = 0
    for folder in sorted(p for p in out.glob("seed*/*") if p.is_dir() and not (p / RESULT_FILE).is_file()):
        if (folder / TRAIN_FILE).is_file():  # trained, not yet evaluated
            parts = [TRAIN_FILE, ADAPTER_DIR]
        elif (folder / CHECKPOINT_DIR).is_dir():
            parts = [CHECKPOINT_DIR, CURVE_FILE]
        else:
            continue
        rel = folder.relative_to(out)
        shutil.rmtree(dest / rel, ignore_errors=True)  # an older carry of this stage
        (dest / rel).mkdir(parents=True)
        for part in parts:
            source = folder / part
            if source.is_dir():
                shutil.copytree(source, dest / rel / part)
            elif source.is_file():
                shutil.copy(source, dest / rel / part)
        unfinished += 1
    print(f"saved {stages} finished stages ({adapters} adapters that later stages load) and {unfinished} "
          f"unfinished ones (checkpoint, or trained adapter awaiting evaluation) of {out} to {dest}")


def restore(dest: Path) -> None:
    if not (dest / "origin").is_file():
        sys.exit(f"{dest}/origin is missing: DEST must come from 'carry_run.py save'")
    out = Path((dest / "origin").read_text().strip())
    if (out / "config.json").is_file() and (out / "config.json").read_bytes() != (dest / "config.json").read_bytes():
        sys.exit(f"{out} holds another benchmark (its config.json differs): move it away first")
    for path in dest.rglob("*"):
        if path.is_file() and path.name != "origin":
            target = out / path.relative_to(dest)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    print(f"restored {len(list(dest.glob('seed*/*/result.json')))} finished stages into {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save", help="copy OUT's finished stages to DEST")
    s.add_argument("out", type=Path), s.add_argument("dest", type=Path)
    r = sub.add_parser("restore", help="copy DEST back to the OUT it was saved from")
    r.add_argument("dest", type=Path)
    args = p.parse_args()
    save(args.out, args.dest) if args.command == "save" else restore(args.dest)


if __name__ == "__main__":
    main()
