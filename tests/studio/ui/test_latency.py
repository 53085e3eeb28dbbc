"""Every read endpoint of the app answers over HTTP in under a second while a run trains in a real worker
(nothing trains or loads a model inside an event). The medians go to ``test-artifacts/latency.json``."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ARTIFACTS = Path(os.environ.get("FLOWOPD_ARTIFACTS", Path(__file__).resolve().parents[3] / "test-artifacts"))
FAST = dict(batch_size=8, group_size=4, train_batch_size=4, num_steps=3, optimizer_steps_per_epoch=2, eval_steps=3,
            ema=False, sample_every=1, checkpoint_every=1, lora_rank=4, lora_alpha=8.0, epochs=5000,
            rewards={"prefer": 1.0}, prompt_tasks={"prefer": 1.0})


def test_read_endpoints_answer_within_a_second_while_a_run_trains(small_model, small_model_dir, tmp_path) -> None:
    from gradio_client import Client

    from flowopd_studio.storage.queue import stop, submit
    from flowopd_studio.storage.store import Store
    from flowopd_studio.ui import build_app
    from flowopd_studio.ui.state import AppState

    home = tmp_path / "home"
    app = build_app(AppState(small_model, "small random", home=home))
    app.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    store = Store(home)
    run = submit(store, "grpo", {**FAST, "model": str(small_model_dir)}, name="busy")
    try:
        deadline = time.monotonic() + 120
        while store.get_run(run.id).step < 2:  # a real worker, past its start-up and training
            assert time.monotonic() < deadline, f"the worker did not train: {store.get_run(run.id)}"
            time.sleep(0.5)
        client = Client(app.local_url, verbose=False)
        reads = {"/runs_table": (), "/run_status": (run.id,), "/run_plots": (run.id, [], 0.5),
                 "/run_samples": (run.id,), "/list_teachers": (), "/current_base": (), "/compare_models": (),
                 "/export_sources": (), "/results_show": ("committed reproduction (docs/results-tiny.md)",)}
        medians = {}
        for name, args in reads.items():
            times = []
            for _ in range(5):
                start = time.perf_counter()
                client.predict(*args, api_name=name)
                times.append(time.perf_counter() - start)
            medians[name] = statistics.median(times)
        assert store.get_run(run.id).status == "running"  # measured while it trained
    finally:
        if store.get_run(run.id).status in ("queued", "running"):
            stop(store, run.id, force=True)
        store.close()
        app.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "latency.json").write_text(json.dumps({k: round(v, 4) for k, v in medians.items()}, indent=1))
    slow = {k: round(v, 3) for k, v in medians.items() if v >= 1.0}
    assert not slow, f"read endpoints slower than 1 s over HTTP: {slow}"
