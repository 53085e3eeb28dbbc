"""Resumable checkpoints of a trainer: one folder, replaced atomically.

Layout of ``OUT/checkpoint/``::

    adapter/     the student's live LoRA (``flowopd.adapters.save_adapter``: safetensors + adapter.json)
    ema/         the EMA of the student's LoRA, when EMA is on (what evaluation should load)
    state.pt     optimizer, LR scheduler, EMA tensors, step, epoch and the main process's RNG states
    rng_<k>.pt   RNG states of process k (python, numpy, torch, cuda)
    config.json  the stage's config

A save writes ``checkpoint.new/`` (``state.pt`` last), then renames the old folder to ``checkpoint.prev/``
and the new one into place: a process killed at any moment leaves a complete checkpoint behind
(:func:`find_checkpoint` falls back to ``checkpoint.prev/``). A NaN never reaches a checkpoint: the
trainers check the loss and the gradients before every optimizer step.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from ..layout import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    NEW_CHECKPOINT_DIR,
    PREVIOUS_CHECKPOINT_DIR,
    STATE_FILE,
    CheckpointError,
)

log = logging.getLogger(__name__)
__all__ = ["CheckpointError", "checkpoint_step", "find_checkpoint", "load_state", "rng_state", "save_checkpoint",
           "set_rng_state"]


def rng_state() -> dict[str, Any]:
    """The global RNG states of python, numpy, torch (and CUDA when present)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find_checkpoint(out_dir: str | Path) -> Path | None:
    """The complete checkpoint folder of ``out_dir`` (the previous one if a save was cut short), else None."""
    for name in (CHECKPOINT_DIR, PREVIOUS_CHECKPOINT_DIR):
        folder = Path(out_dir) / name
        if (folder / STATE_FILE).is_file():
            return folder
    return None


def checkpoint_step(out_dir: str | Path) -> int:
    """The optimizer step a resume of ``out_dir`` continues from (0 without a checkpoint).

    Raises:
        CheckpointError: the checkpoint's ``state.pt`` cannot be read.
    """
    folder = find_checkpoint(out_dir)
    if folder is None:
        return 0
    return int(load_state(folder)["step"])


def load_state(folder: Path, process_index: int = 0) -> dict[str, Any]:
    """``state.pt`` of a checkpoint folder, with ``rng`` set to process ``process_index``'s RNG states."""
    try:
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises pickle, zip, EOF and OS errors for a damaged file
        raise CheckpointError(f"checkpoint {folder / STATE_FILE} is unreadable ({type(err).__name__}: {err}): "
                              "delete the folder to start over") from None
    rng_file = folder / f"rng_{process_index}.pt"
    if rng_file.is_file():
        state["rng"] = torch.load(rng_file, weights_only=False)
    return state


def save_checkpoint(out_dir: str | Path, accelerator: Accelerator, *, save_adapters, state: dict[str, Any],
                    config: dict) -> Path:
    """Write a checkpoint of ``out_dir`` (see the module docstring); returns its folder.

    Args:
        save_adapters: ``folder -> None``, called on the main process to write ``adapter/`` (and ``ema/``).
        state: optimizer, scheduler, ema, step and epoch (identical on every process).
        config: the stage's config as a dict.
    """
    out = Path(out_dir)
    new, current, previous = out / NEW_CHECKPOINT_DIR, out / CHECKPOINT_DIR, out / PREVIOUS_CHECKPOINT_DIR
    if accelerator.is_main_process:
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), new / f"rng_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_adapters(new)
        (new / CONFIG_FILE).write_text(json.dumps(config, indent=1))
        torch.save({**state, "rng": rng_state()}, new / STATE_FILE)  # last: its presence marks a complete folder
        if current.exists():
            shutil.rmtree(previous, ignore_errors=True)
            current.rename(previous)
        new.rename(current)
        shutil.rmtree(previous, ignore_errors=True)
        log.info("checkpoint at step %d written to %s", state["step"], current)
    accelerator.wait_for_everyone()
    return current
