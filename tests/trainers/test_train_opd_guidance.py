"""The OPD trainer queries each teacher and the MAR anchor at its own guidance (its adapter.json), or at
``teacher_guidance`` when set; a CFG-free student still gets guided teacher targets."""

from __future__ import annotations

from flowopd.adapters import add_lora, delete_adapter, save_adapter


def test_the_opd_trainer_queries_each_teacher_at_its_own_guidance(tiny, opd_config, tmp_path) -> None:
    from flowopd.methods.opd.trainer import OPDTrainer

    model = tiny()
    folders = {}
    for task, g in (("compose", 1.0), ("text", None)):
        add_lora(model, "tmp", 2, 2.0)
        folders[task] = str(save_adapter(model, "tmp", tmp_path / task, guidance=g))
        delete_adapter(model, "tmp")
    trainer = OPDTrainer(model, opd_config(folders, guidance=2.0, mar_anchor=folders["compose"]), tmp_path / "run")
    assert trainer.guidance == {None: 2.0, "teacher_compose": 1.0, "teacher_text": 2.0, "anchor": 1.0}
    model = tiny()
    trainer = OPDTrainer(model, opd_config(folders, guidance=2.0, teacher_guidance=5.0), tmp_path / "run2")
    assert trainer.guidance["teacher_compose"] == trainer.guidance["teacher_text"] == 5.0


def test_a_cfg_free_student_learns_from_guided_teachers(tiny, opd_config, tmp_path) -> None:
    from flowopd.methods.opd.trainer import train_opd

    model = tiny()
    add_lora(model, "tmp", 2, 2.0)
    folder = str(save_adapter(model, "tmp", tmp_path / "teacher", guidance=3.0))
    delete_adapter(model, "tmp")
    seen = []
    result = train_opd(model, opd_config({"compose": folder}, guidance=1.0, beta_mar=0.02), tmp_path / "run",
                       callback=seen.append)  # rollouts without uncond embeddings: the trainer makes them
    assert result.step == 2 and all(m["kl/teacher"] >= 0 for m in seen)
    import json

    assert json.loads((result.adapter_dir / "adapter.json").read_text())["guidance"] == 1.0
