"""Training-curve figures from synthetic curves: which panels a stage gets, the per-step KL profile, smoothing."""

from __future__ import annotations

import pytest

from flowopd.reproduce.plots import PER_STEP, _panels, plot_stage, step_profile, trailing_mean

PNG = b"\x89PNG\r\n\x1a\n"


def _opd_curve(scale: float, epochs: int = 10) -> list[dict]:
    """An OPD-like curve: the KL to the teacher shrinks with the epoch and with the denoising step j."""
    rows = []
    for e in range(epochs):
        row = {"step": 2 * (e + 1), "reward/text": 0.5 + 0.01 * e, "kl/teacher": scale / (e + 1),
               "kl/anchor": scale / 2}
        row.update({f"kl/teacher/step_{j}": scale * (j + 1) / (e + 1) for j in range(3)})
        row.update({f"kl/anchor/step_{j}": scale / 2 for j in range(3)})
        rows.append(row)
    return rows


def test_step_profile_takes_each_seeds_first_or_last_epoch_and_averages_seeds() -> None:
    curves = [_opd_curve(1.0), _opd_curve(3.0)]
    assert step_profile(curves, "kl/teacher", "first") == ([0, 1, 2], [2.0, 4.0, 6.0])
    steps, last = step_profile(curves, "kl/teacher", "last")
    assert steps == [0, 1, 2] and last == pytest.approx([0.2, 0.4, 0.6])
    assert step_profile(curves, "kl/base", "last") == ([], [])  # not logged by this stage
    with pytest.raises(ValueError, match="'first' or 'last'"):
        step_profile(curves, "kl/teacher", "middle")


def test_a_stage_with_per_step_kls_gets_the_per_step_panel(tmp_path) -> None:
    panels = dict(_panels([_opd_curve(1.0)]))
    assert panels[PER_STEP] == ["kl/teacher", "kl/anchor"]
    assert panels["reward (training)"] == ["reward/text"]
    sft = [{"step": 1, "loss": 0.3}, {"step": 2, "loss": 0.2}]
    assert _panels([sft]) == [("loss", ["loss"])]
    path = plot_stage("opd", [_opd_curve(1.0), _opd_curve(2.0)], tmp_path / "opd.png")
    assert path.read_bytes().startswith(PNG)


def test_trailing_mean_rejects_an_empty_window() -> None:
    assert trailing_mean([], 3) == []
    with pytest.raises(ValueError, match="window"):
        trailing_mean([1.0], 0)


def test_a_student_that_never_moved_plots_its_zero_kls_without_a_log_scale(tmp_path) -> None:
    import warnings

    zero = [{"step": 1, "kl/base": 0.0, "kl/base/step_0": 0.0, "kl/base/step_1": 0.0}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when log-scaling no positive values
        path = plot_stage("grpo", [zero], tmp_path / "grpo.png")
    assert path.read_bytes().startswith(PNG)
