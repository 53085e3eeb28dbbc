"""GRPO on a remote reward named in its config: the served reward trains like the local one, and a server that
goes down (or starts answering garbage) after the first epoch stops the run with a clear error and leaves its
checkpoint intact, so the same command resumes it once the server is back."""

from __future__ import annotations

import threading

import pytest

from flowopd.layout import CHECKPOINT_DIR, NEW_CHECKPOINT_DIR
from flowopd.methods.grpo.trainer import train_grpo
from flowopd.rewards import get_reward
from flowopd.rewards.remote import RewardServerError
from flowopd.rewards.serve import RewardHandler, make_server
from flowopd.training.checkpoint import checkpoint_step, find_checkpoint, load_state


class Switchable(RewardHandler):
    """The served reward, or garbage once ``server.garbage`` is set."""

    def do_POST(self):  # noqa: N802
        if self.server.garbage:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            return self._send(200, {"result": "ok"})
        super().do_POST()


def _start(port: int = 0):
    server = make_server(get_reward("prefer"), port=port, name="prefer")
    server.RequestHandlerClass, server.garbage = Switchable, False
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.mark.parametrize("failure", ["down", "garbage"])
def test_a_failing_reward_server_keeps_the_last_checkpoint(tiny, grpo_config, tmp_path, failure):
    server = _start()
    port = server.server_address[1]
    name = f"remote:http://127.0.0.1:{port}"
    get_reward(name).backoff = 0.01  # the run's reward is this same object (built once per name)

    def fail_after_first_epoch(metrics: dict) -> None:
        assert metrics["reward/" + name] > 0  # the served prefer reward scored the rollouts
        if failure == "down":
            server.shutdown()
            server.server_close()
        else:
            server.garbage = True

    cfg = grpo_config(rewards={name: 1.0}, epochs=2, checkpoint_every=1)
    expected = (rf"reward server http://127.0.0.1:{port}: it is down \(connection refused\), after 3 attempt"
                if failure == "down" else rf"reward server http://127.0.0.1:{port} answered garbage to /compute: "
                                          r"its answer has no \"scores\" list \(keys: result\)")
    with pytest.raises(RewardServerError, match=expected):
        train_grpo(tiny(), cfg, tmp_path, callback=fail_after_first_epoch)

    # The first epoch's checkpoint is complete and untouched (scoring comes before any step of epoch 2).
    assert find_checkpoint(tmp_path) == tmp_path / CHECKPOINT_DIR and not (tmp_path / NEW_CHECKPOINT_DIR).exists()
    assert checkpoint_step(tmp_path) == 2 and load_state(tmp_path / CHECKPOINT_DIR)["epoch"] == 1

    if failure == "down":  # back on the same address: the same config resumes and finishes the run
        server = _start(port)
        try:
            result = train_grpo(tiny(), cfg, tmp_path)
        finally:
            server.shutdown()
            server.server_close()
        assert (result.step, result.epoch, result.stopped) == (4, 2, False)
    else:
        server.shutdown()
        server.server_close()
