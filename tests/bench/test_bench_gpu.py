"""``flowopd bench gpu`` on the CPU with the tiny shape: both designs, the documented files and keys, and the
full-copy design holding more than ours."""

from __future__ import annotations

import json

import pytest

from flowopd.bench.model import SD35_MEDIUM_TRANSFORMER, SHAPES

DESIGN_KEYS = {"description", "transformers", "adapters", "param_count", "lora_param_count", "trainable_param_count",
               "model_bytes", "model_vs_base", "static_memory_bytes", "peak_memory_bytes", "peak_vs_base",
               "seconds_per_iteration", "images_per_s", "flops_per_iteration", "tflops_per_s", "loss"}
TOP_KEYS = {"device", "device_name", "dtype", "copy_dtype", "shape", "transformer_config", "resolution", "latent_shape",
            "text_tokens", "teachers", "batch", "micro_batch", "steps", "trained_steps", "lora_rank", "iters", "seed",
            "tf32", "memory_method", "base_param_count", "base_bytes", "designs", "speedup", "memory_ratio", "goals",
            "versions", "notes"}


def test_tiny_bench_on_cpu_writes_both_designs(cli, tmp_path):
    code, out, err = cli("bench", "gpu", "--device", "cpu", "--shape", "tiny", "--teachers", "2", "--batch", "2",
                         "--steps", "3", "--out", tmp_path)
    assert code == 0, err
    report = json.loads((tmp_path / "bench-gpu.json").read_text())
    assert set(report) == TOP_KEYS
    assert set(report["designs"]) == {"adapters", "full-copy"}
    ours, full = report["designs"]["adapters"], report["designs"]["full-copy"]
    for design in (ours, full):
        assert set(design) == DESIGN_KEYS
        assert design["seconds_per_iteration"] > 0 and design["flops_per_iteration"] > 0
        assert design["peak_memory_bytes"] > 0 and design["loss"] > 0
    # ours: one transformer with 2 teachers + anchor + student as adapters; the released layout: 3 more copies
    assert (ours["transformers"], len(ours["adapters"])) == (1, 4)
    assert (full["transformers"], full["adapters"]) == (4, ["student"])
    assert full["param_count"] > 3 * ours["param_count"] and full["model_bytes"] > 3 * ours["model_bytes"]
    assert ours["trainable_param_count"] == full["trainable_param_count"]  # the same student LoRA trains
    assert 1 < ours["model_vs_base"] < 1.3 and report["memory_ratio"] > 3
    assert report["goals"]["met"] is None  # goals apply to sd35-medium on a GPU
    assert report["memory_method"].startswith("peak resident set size")
    table = (tmp_path / "bench-gpu.md").read_text()
    assert "| adapters | 1 | 4 |" in table and "| full-copy | 4 | 1 |" in table
    assert table in out  # the command prints the table


def test_sd35_medium_shape_is_the_real_config():
    cfg = SHAPES["sd35-medium"].transformer_config(1024)
    assert cfg == SD35_MEDIUM_TRANSFORMER
    assert cfg["caption_projection_dim"] == cfg["num_attention_heads"] * cfg["attention_head_dim"]
    assert SHAPES["sd35-medium"].transformer_config(512)["sample_size"] == 128  # the config does not change


@pytest.mark.parametrize(("args", "message"), [
    (["--shape", "tiny", "--resolution", "72"], "--resolution 72 does not suit shape tiny"),
    (["--shape", "sd35-medium", "--resolution", "8192"], "--resolution 8192 does not suit shape sd35-medium"),
    (["--shape", "tiny", "--teachers", "5"], "--teachers 5 is out of range"),
    (["--shape", "tiny", "--batch", "4", "--micro-batch", "3"], "--micro-batch 3 must divide --batch 4"),
    (["--shape", "tiny", "--steps", "1"], "--steps 1 is too few"),
])
def test_bad_options_are_one_error_line(cli, tmp_path, args, message):
    code, _, err = cli("bench", "gpu", "--device", "cpu", *args, "--out", tmp_path)
    assert code == 2 and err.startswith("flowopd: error: ") and message in err, err
    assert not (tmp_path / "bench-gpu.json").exists()
