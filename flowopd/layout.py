"""The names inside a run folder, defined once for the trainers, the reproduce benchmark and the studio.

A trainer's ``out_dir`` (a studio run folder, or ``OUT/seed<k>/<stage>/`` of ``flowopd reproduce``)::

    checkpoint/       resumable state (flowopd.training.checkpoint); pretrain: the EMA model + train_state.pt
      adapter/        the student's live LoRA
      ema/            the EMA of the student's LoRA, when EMA is on
      old/            NFT: the frozen old adapter (its soft-updated copy)
      state.pt        optimizer, scheduler, EMA tensors, step, epoch, RNG states
      config.json     the stage's config
    checkpoint.new/   a checkpoint being written; checkpoint.prev/ the one it replaces
    adapter/          the LoRA a trainer exports (the EMA when EMA is on)
    coldstart.json    the cold start's config
    sft.json          an SFT teacher's config (its ``kind`` names the algorithm), beside its adapter/
    samples/          images sampled during training (the studio's reporter)
    exports/          files exported from the run
    train.json, curve.jsonl, result.json   a reproduce stage's compute, training curve and evaluation

``flowopd reproduce``'s own folder: ``results.json``, ``details.json``, ``report.md``, ``plots/`` and its
``config.json``. A pretraining run: ``train_state.pt`` and ``pretrain_config.json`` beside the model's files.
An export: ``export.json`` and ``comparison.png`` beside the format folders.

Importing this module costs nothing (no torch).
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_DIR = "checkpoint"
NEW_CHECKPOINT_DIR = "checkpoint.new"
PREVIOUS_CHECKPOINT_DIR = "checkpoint.prev"
ADAPTER_DIR = "adapter"
EMA_DIR = "ema"
OLD_ADAPTER_DIR = "old"  # DiffusionNFT's frozen old adapter, in its checkpoint
SAMPLES_DIR = "samples"
TRACKERS_DIR = "trackers"  # a run's TensorBoard event files and offline wandb runs (flowopd.trackers)
PROMPT_CACHE_DIR = "prompt-cache"  # a run's prompt embeddings (flowopd.models.prompt_cache)
EXPORTS_DIR = "exports"
REPORTS_DIR = "reports"  # reports a run produced (a recorded reproduce: report.md, results.json)
STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
COLDSTART_FILE = "coldstart.json"
SFT_FILE = "sft.json"
TRAIN_FILE = "train.json"
CURVE_FILE = "curve.jsonl"
RESULT_FILE = "result.json"
# an adapter folder (flowopd.adapters.save_adapter): diffusers' LoRA weights and our metadata
ADAPTER_WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
ADAPTER_META_FILE = "adapter.json"
# flowopd reproduce's folder
RESULTS_FILE = "results.json"
DETAILS_FILE = "details.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
# pretraining
PRETRAIN_STATE_FILE = "train_state.pt"
PRETRAIN_CONFIG_FILE = "pretrain_config.json"
# an export
EXPORT_FILE = "export.json"
COMPARISON_FILE = "comparison.png"


class CheckpointError(ValueError):
    """A checkpoint is missing, torn or does not belong to this run (one class: the library's and the store's)."""


__all__ = ["ADAPTER_DIR", "ADAPTER_META_FILE", "ADAPTER_WEIGHTS_FILE", "CHECKPOINT_DIR", "COLDSTART_FILE",
           "COMPARISON_FILE", "CONFIG_FILE", "CURVE_FILE", "DETAILS_FILE", "EMA_DIR", "EXPORTS_DIR", "EXPORT_FILE",
           "NEW_CHECKPOINT_DIR", "OLD_ADAPTER_DIR", "PLOTS_DIR", "PRETRAIN_CONFIG_FILE", "PRETRAIN_STATE_FILE",
           "PREVIOUS_CHECKPOINT_DIR", "PROMPT_CACHE_DIR", "REPORTS_DIR", "REPORT_FILE", "RESULTS_FILE",
           "RESULT_FILE", "SAMPLES_DIR", "SFT_FILE", "STATE_FILE", "TRACKERS_DIR", "TRAIN_FILE", "CheckpointError",
           "adapter_dir", "checkpoint_dir", "exports_dir", "samples_dir"]


def checkpoint_dir(run_folder: str | Path) -> Path:
    """``run_folder/checkpoint``: the resumable checkpoint (a pretrain run's model)."""
    return Path(run_folder) / CHECKPOINT_DIR


def adapter_dir(run_folder: str | Path) -> Path:
    """``run_folder/adapter``: the LoRA a trainer exports.

    Example:
        >>> adapter_dir("runs/opd").as_posix()
        'runs/opd/adapter'
    """
    return Path(run_folder) / ADAPTER_DIR


def samples_dir(run_folder: str | Path) -> Path:
    """``run_folder/samples``: images sampled during training."""
    return Path(run_folder) / SAMPLES_DIR


def exports_dir(run_folder: str | Path) -> Path:
    """``run_folder/exports``: files exported from the run."""
    return Path(run_folder) / EXPORTS_DIR
