"""Pretraining on the small config: the loss falls, resume continues exactly, NaN guard, checkpoint errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from flowopd.models import load_model
from flowopd.models.tiny import CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE, TinyFlowModel
from flowopd.pretrain import STATE_FILE, PretrainConfig, pretrain, scene_loss


@pytest.fixture
def make_cfg(small_config):
    """``make_cfg(**overrides)``: 25 steps of batch 8 at lr 3e-3 on the small config, no intermediate saves."""

    def make(**kwargs) -> PretrainConfig:
        base = dict(steps=25, batch_size=8, lr=3e-3, warmup_steps=3, checkpoint_every=100, model=small_config)
        return PretrainConfig(**{**base, **kwargs})

    return make


def _run(cfg: PretrainConfig, out: Path, **kwargs) -> list[dict]:
    seen: list[dict] = []
    pretrain(cfg, out, callback=seen.append, **kwargs)
    return seen


def test_loss_falls_and_checkpoint_is_written(tmp_path: Path, make_cfg) -> None:
    seen = _run(make_cfg(), tmp_path)
    assert [m["step"] for m in seen] == list(range(1, 26))
    assert set(seen[0]) == {"step", "loss", "lr", "images_per_s"}
    losses = [m["loss"] for m in seen]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert seen[0]["lr"] == pytest.approx(3e-3 / 3)  # warm-up
    for name in (WEIGHTS_FILE, CONFIG_FILE, VOCAB_FILE, STATE_FILE, "pretrain_config.json"):
        assert (tmp_path / name).is_file(), name
    model = load_model(tmp_path)
    assert isinstance(model, TinyFlowModel) and model.config.num_layers == 1


def test_resume_continues_exactly(tmp_path: Path, make_cfg) -> None:
    cfg = make_cfg(steps=6)
    straight = _run(cfg, tmp_path / "straight")

    seen: list[dict] = []  # interrupted after step 3 (as the app's stop button does)
    pretrain(cfg, tmp_path / "resumed", callback=seen.append, should_stop=lambda: len(seen) >= 3)
    assert [m["step"] for m in seen] == [1, 2, 3]
    assert torch.load(tmp_path / "resumed" / STATE_FILE, weights_only=False)["step"] == 3

    rest = _run(cfg, tmp_path / "resumed")
    assert [m["step"] for m in rest] == [4, 5, 6]  # continues, does not restart
    assert [m["loss"] for m in seen + rest] == pytest.approx([m["loss"] for m in straight], rel=1e-5)
    a = TinyFlowModel.load(tmp_path / "straight").state_dict()
    b = TinyFlowModel.load(tmp_path / "resumed").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)

    again = _run(cfg, tmp_path / "resumed", resume=False)
    assert [m["step"] for m in again] == list(range(1, 7))  # resume=False starts over


def test_nan_loss_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_cfg) -> None:
    monkeypatch.setattr("flowopd.pretrain.scene_loss",
                        lambda *args, **kwargs: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match="nan.*step 0.*lower lr"):
        pretrain(make_cfg(steps=3), tmp_path)


@pytest.mark.parametrize("logit_mean, low, high", [(0.0, 0.4, 0.6), (-1.5, 0.1, 0.3)])
def test_logit_mean_moves_the_training_timesteps(small_model, monkeypatch: pytest.MonkeyPatch,
                                                 logit_mean: float, low: float, high: float) -> None:
    seen: list[torch.Tensor] = []
    real = small_model.raw_velocity
    monkeypatch.setattr(small_model, "raw_velocity", lambda x, t, cond: seen.append(t) or real(x, t, cond))
    images = torch.rand(256, 3, small_model.config.image_size, small_model.config.image_size)
    with torch.no_grad():
        scene_loss(small_model, images, [""] * 256, torch.Generator().manual_seed(0), logit_mean, 1.0)
    assert low < float(torch.median(seen[0])) < high  # median of sigmoid(N(m, 1)) is sigmoid(m)


@pytest.mark.parametrize("kwargs, field", [
    ({"steps": 0}, "steps"), ({"batch_size": -1}, "batch_size"), ({"lr": 0.0}, "lr"),
    ({"task_weights": {"painting": 1.0}}, "painting"), ({"model": {"bogus": 1}}, "bogus"),
    ({"logit_std": 0.0}, "logit_std"),
])
def test_config_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PretrainConfig(**kwargs)


# --- checkpoint loading errors ----------------------------------------------------------------------------


@pytest.fixture
def checkpoint_copy(small_model_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(small_model_dir, folder)
    return folder


def test_save_load_round_trip(small_model, checkpoint_copy: Path) -> None:
    loaded = TinyFlowModel.load(checkpoint_copy)
    assert loaded.config == small_model.config and loaded.tokenizer.vocab == small_model.tokenizer.vocab
    a, b = small_model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", [WEIGHTS_FILE, CONFIG_FILE, VOCAB_FILE])
def test_missing_file(checkpoint_copy: Path, name: str) -> None:
    (checkpoint_copy / name).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        TinyFlowModel.load(checkpoint_copy)


@pytest.mark.parametrize("name, content", [
    (WEIGHTS_FILE, b"not a safetensors file at all"),
    (WEIGHTS_FILE, b""),
    (WEIGHTS_FILE, "truncate"),
    (VOCAB_FILE, b"{"),
    (VOCAB_FILE, b"[]"),
    (CONFIG_FILE, b'{"backend": "tiny", "num_layers": "many"}'),
])
def test_corrupt_checkpoint(checkpoint_copy: Path, name: str, content) -> None:
    path = checkpoint_copy / name
    path.write_bytes(path.read_bytes()[:200] if content == "truncate" else content)
    with pytest.raises(ValueError, match="corrupt"):
        TinyFlowModel.load(checkpoint_copy)
    with pytest.raises(ValueError):
        load_model(checkpoint_copy)


def test_checkpoint_of_another_config(checkpoint_copy: Path) -> None:
    (checkpoint_copy / CONFIG_FILE).write_text('{"backend": "tiny", "num_layers": 2}')
    with pytest.raises(ValueError, match="does not match its config"):
        TinyFlowModel.load(checkpoint_copy)


def test_load_model_path_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not a model folder"):
        load_model(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        load_model(tmp_path / "file.txt")
    (tmp_path / "config.json").write_text('{"backend": "flux"}')
    with pytest.raises(ValueError, match="'flux'"):
        load_model(tmp_path)


def test_init_from_starts_at_the_saved_weights(tmp_path: Path, make_cfg, small_model, small_config) -> None:
    """Continued pretraining: the first loss equals the saved model's loss on the same batch, unlike a
    fresh start; a saved model of another architecture is refused by name."""
    small_model.save(tmp_path / "start")
    saved = TinyFlowModel.load(tmp_path / "start")
    with torch.no_grad():  # unlike the seed's fresh initialisation
        for p in saved.transformer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    saved.save(tmp_path / "start")
    saved = TinyFlowModel.load(tmp_path / "start")
    cfg = make_cfg(steps=1, init_from=str(tmp_path / "start"), lr=1e-12, warmup_steps=1)
    continued = _run(cfg, tmp_path / "continued")
    fresh = _run(make_cfg(steps=1, lr=1e-12, warmup_steps=1), tmp_path / "fresh")
    out = TinyFlowModel.load(tmp_path / "continued")
    for a, b in zip(saved.transformer.parameters(), out.transformer.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    assert continued[0]["loss"] != pytest.approx(fresh[0]["loss"], rel=1e-3)
    other = dict(small_config.__dict__, num_layers=small_config.num_layers + 1)
    with pytest.raises(ValueError, match="init_from .* has model config"):
        pretrain(make_cfg(init_from=str(tmp_path / "start"), model=other), tmp_path / "other")
