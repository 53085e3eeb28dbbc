"""Distance task sampling and the gradient-conflict measure in the OPD trainer, and their state across a resume."""

from __future__ import annotations

import pytest


def test_distance_sampling_moves_prompts_to_the_task_furthest_from_its_teacher(tiny, make_teachers, opd_config,
                                                                               tmp_path) -> None:
    from flowopd.methods.opd.trainer import OPDTrainer, train_opd

    model = tiny()
    teachers = make_teachers(model, {"compose": 1, "text": 2})
    # text's teacher is set far above anything the student scores; compose's below it: all the gap is text's
    cfg = opd_config(teachers, epochs=2, log_rewards=True, task_sampling="distance", distance_floor=0.2,
                     teacher_rewards={"compose": -1.0, "text": 2.0}, conflict_every=1)
    seen = []
    train_opd(model, cfg, tmp_path, callback=seen.append)
    first, second = seen[0], seen[-1]
    assert first["task_weight/text"] == pytest.approx(0.5)  # no student rewards yet: prompt_tasks
    assert second["task_weight/text"] == pytest.approx(0.9) and second["task_weight/compose"] == pytest.approx(0.1)
    assert -1.0 <= first["conflict/compose~text"] <= 1.0
    resumed = OPDTrainer(tiny(), cfg, tmp_path)  # the checkpoint keeps the rewards the sampling reads
    assert resumed.teacher_rewards == {"compose": -1.0, "text": 2.0} and set(resumed.student_rewards) == {
        "compose", "text"}


def test_teacher_rewards_are_measured_when_not_given(tiny, make_teachers, opd_config, tmp_path) -> None:
    from flowopd.methods.opd.trainer import OPDTrainer

    model = tiny()
    teachers = make_teachers(model, {"prefer": 1})
    trainer = OPDTrainer(model, opd_config(teachers, log_rewards=True, task_sampling="distance",
                                           reference_prompts=4), tmp_path)
    assert set(trainer.teacher_rewards) == {"prefer"} and 0.0 <= trainer.teacher_rewards["prefer"] <= 1.0
