"""``flowopd export`` in-process: a tiny-model adapter exported as flowopd, peft and fused, each loaded by its
consumer's loader to the adapter's outputs; clear errors for an unknown format, a wrong base, a non-adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


@pytest.fixture
def run_folder(small_model_dir: Path, tmp_path: Path) -> Path:
    """A trainer's run folder on the small model: adapter/ (r 2, alpha 4, random B) and checkpoint/config.json."""
    from flowopd.adapters import adapter_parameters, add_lora, save_adapter
    from flowopd.models.tiny import TinyFlowModel

    model = TinyFlowModel.load(small_model_dir)
    add_lora(model, "student", 2, 4.0, seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in adapter_parameters(model, "student").items():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    run = tmp_path / "opd-run"
    save_adapter(model, "student", run / "adapter")
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "config.json").write_text(json.dumps({"kind": "opd", "rewards": {"text": 1.0}}))
    return run


def _outputs(transformer) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    cfg = transformer.config
    x = torch.randn(1, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=g)
    with torch.no_grad():
        return transformer(hidden_states=x, timestep=torch.tensor([500.0]),
                           encoder_hidden_states=torch.randn(1, 4, cfg.joint_attention_dim, generator=g),
                           pooled_projections=torch.randn(1, cfg.pooled_projection_dim, generator=g),
                           return_dict=False)[0]


def test_export_writes_verified_formats_that_their_loaders_load(cli, small_model_dir, run_folder, tmp_path):
    from diffusers import SD3Transformer2DModel
    from peft import PeftModel

    from flowopd.adapters import load_adapter, use_adapter
    from flowopd.models.tiny import TinyFlowModel

    out = tmp_path / "exports"
    code, stdout, err = cli("export", run_folder / "adapter", "--format", "peft", "--format", "fused", "--format",
                            "flowopd", "--model", small_model_dir, "--out", out)
    assert code == 0, err
    folder = out / "opd-run"
    assert stdout.split()[:3] == [str(folder / f) for f in ("peft", "fused", "flowopd")]
    assert "verified" in stdout and (out / "opd-run.zip").is_file()
    card = (folder / "README.md").read_text()
    assert "Rewards: text" in card and '"kind": "opd"' in card and "PeftModel.from_pretrained" in card
    model = TinyFlowModel.load(small_model_dir)
    load_adapter(model, run_folder / "adapter", "student")
    with use_adapter(model, "student"):
        want = _outputs(model.transformer)
    peft = PeftModel.from_pretrained(TinyFlowModel.load(small_model_dir).transformer, str(folder / "peft"))
    torch.testing.assert_close(_outputs(peft), want, atol=1e-5, rtol=0)
    fused = SD3Transformer2DModel.from_pretrained(str(folder / "fused")).eval()
    torch.testing.assert_close(_outputs(fused), want, atol=1e-5, rtol=0)


def test_export_errors_name_the_fix(cli, run_folder, tmp_path):
    adapter, out = run_folder / "adapter", tmp_path / "exports"
    code, _, err = cli("export", adapter, "--format", "onnx", "--out", out)
    assert code == 2 and "invalid choice: 'onnx'" in err and "'comfyui'" in err, err  # before anything loads
    code, _, err = cli("export", adapter, "--format", "peft", "--format", "comfyui", "--out", out)
    assert code == 2 and "Traceback" not in err, err
    assert ("format 'comfyui' needs an SD3 base model; this adapter was trained on the built-in tiny model "
            "(adapter.json base_model 'TinyFlowModel:") in err and "use flowopd, peft or fused" in err
    code, _, err = cli("export", tmp_path, "--out", out)
    assert code == 2 and "is not an adapter folder" in err, err
    assert not out.exists() or not any(out.iterdir())


def test_the_help_lists_every_export_format(cli):
    from flowopd.config.choices import EXPORT_FORMATS
    from flowopd_studio.services.export import FORMATS

    assert EXPORT_FORMATS == tuple(FORMATS)
    code, out, _ = cli("export", "--help")
    assert code == 0 and "example: flowopd export" in out
    assert all(name in out for name in FORMATS)


def test_export_refuses_bad_paths_before_anything_loads(tmp_path) -> None:
    """In a fresh interpreter: the refusal comes without importing torch (which takes seconds)."""
    import subprocess
    import sys

    probe = ("import sys\nfrom flowopd_studio.cli import main\n"
             f"code = main(['export', {str(tmp_path)!r}, '--out', '/proc/flowopd-x'])\n"
             "print(code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={
        "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert out.stdout.split() == ["2", "False"], out.stderr
    assert "is not an adapter folder: it lacks pytorch_lora_weights.safetensors" in out.stderr


def test_export_names_an_output_folder_it_cannot_create(cli, run_folder) -> None:
    code, _, err = cli("export", run_folder / "adapter", "--out", "/proc/flowopd-x")
    assert code == 2 and "--out /proc/flowopd-x cannot be created" in err and "Errno" not in err
