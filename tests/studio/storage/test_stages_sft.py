"""The ``sft`` stage in the run store: data frozen as an absolute folder, a run executed in-process that logs its
loss and leaves an adapter a cold start takes by run id, stop then resume, and clear errors at submit."""

from __future__ import annotations

import pytest

from flowopd.world.dataset import write_dataset
from flowopd_studio.storage.queue import resume, stop, submit
from flowopd_studio.storage.worker import execute

SMALL = dict(steps=4, batch_size=4, lr=3e-3, lora_rank=4, lora_alpha=8.0, checkpoint_every=2, sample_every=2,
             sample_count=1, eval_steps=2)


@pytest.fixture
def image_set(tmp_path):
    return write_dataset("text", 8, tmp_path / "set")


def _start(store, fake_spawn, config: dict, stage: str = "sft") -> str:
    run = submit(store, stage, config, spawn=None)
    assert fake_spawn[-1] == run.id
    return run.id


def test_sft_runs_and_its_adapter_is_a_teacher_by_run_id(store, fake_spawn, small_model_dir, image_set,
                                                          loss_steps, monkeypatch) -> None:
    monkeypatch.chdir(image_set.parent)
    run_id = _start(store, fake_spawn, dict(SMALL, data="set", model=str(small_model_dir)))
    assert store.get_run(run_id).config["data"] == str(image_set.resolve())  # frozen absolute
    assert execute(store.home, run_id) == 0
    run = store.get_run(run_id)
    assert run.status == "finished", run.error
    assert loss_steps(store, run_id) == [1, 2, 3, 4]
    assert sorted({s["step"] for s in store.samples(run_id)}) == [2, 4]
    assert [(a["kind"], a["step"]) for a in store.artifacts(run_id)] == [("checkpoint", 4), ("adapter", 4)]
    assert (store.run_dir(run_id) / "sft.json").is_file()
    merge = _start(store, fake_spawn, {"mode": "merge", "teachers": {"text": run_id}, "model": str(small_model_dir)},
                   "coldstart")
    assert execute(store.home, merge) == 0
    assert store.get_run(merge).status == "finished", store.get_run(merge).error


def test_sft_stop_then_resume(store, fake_spawn, small_model_dir, image_set, loss_steps) -> None:
    run_id = _start(store, fake_spawn, dict(SMALL, data=str(image_set), model=str(small_model_dir), sample_every=0))
    assert stop(store, run_id) == "stopping"  # seen after the first step: checkpoint, then stopped
    assert execute(store.home, run_id) == 0
    assert (store.get_run(run_id).status, store.get_run(run_id).step) == ("stopped", 1)
    assert resume(store, run_id).resume_step == 1
    assert execute(store.home, run_id) == 0
    assert store.get_run(run_id).status == "finished"
    assert loss_steps(store, run_id) == [1, 2, 3, 4]


def test_sft_submit_needs_an_image_set_folder(store, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"data='' is invalid: give the folder of the image set"):
        submit(store, "sft", {}, start=False)
    with pytest.raises(ValueError, match=r"data='.*nowhere' is invalid: this folder does not exist"):
        submit(store, "sft", {"data": str(tmp_path / "nowhere")}, start=False)
