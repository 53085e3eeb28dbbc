"""Real-image reward names in configs: what is accepted, the messages for what is not, the SD3.5 presets'
per-task rewards, and which prompts a reward scores in a mix."""

from __future__ import annotations

import pytest

from flowopd.methods.awm.config import AWMConfig
from flowopd.methods.grpo.config import GRPOConfig
from flowopd.methods.nft.config import NFTConfig
from flowopd.reward_names import SD35_TASK_REWARDS, reward_argument, reward_task


@pytest.mark.parametrize("cls", [GRPOConfig, NFTConfig])
def test_configs_take_real_image_rewards(cls):
    rewards = {"ocr": 1.0, "pickscore:/data/pickscore": 0.5, "geneval": 1.0, "deqa:http://gpu3:18086": 0.2,
               "remote:https://judge.example:8443/v1": 1.0, "text": 1.0}
    assert cls(rewards=rewards).rewards == rewards
    assert cls.from_json(cls(rewards=rewards).to_json()).rewards == rewards  # a run's snapshot keeps them


@pytest.mark.parametrize("rewards, message", [
    ({"ocr:eng": 1.0}, r"'ocr' takes no argument: write 'ocr'"),
    ({"remote": 1.0}, r"'remote' needs the server's address: write remote:http://HOST:PORT"),
    ({"remote:127.0.0.1:8000": 1.0}, r"'remote:127.0.0.1:8000': the server's address must start with http://"),
    ({"geneval:": 1.0}, r"'geneval:' has an empty URL"),
    ({"pick": 1.0}, r"'pick' is not a registered reward; use names from compose, text, prefer, quality, or a "
                    r"real-image reward: ocr, pickscore\[:FOLDER\], aesthetic\[:FOLDER\], geneval\[:URL\], "
                    r"deqa\[:URL\], remote:URL"),
    ({"ocr": -1.0}, r"the weight of 'ocr' must be a finite number >= 0"),
])
def test_bad_reward_names_say_how_to_write_them(rewards, message):
    with pytest.raises(ValueError, match=rf"rewards=.* is invalid: {message}"):
        GRPOConfig(rewards=rewards)


def test_sd35_presets_name_the_papers_reward_of_each_task():
    assert GRPOConfig.sd35_medium().rewards == {"geneval": 1.0}  # its default prompt set is compose's
    assert GRPOConfig.sd35_medium(prompt_tasks={"text": 1.0}).rewards == {"ocr": 1.0}
    mix = GRPOConfig.sd35_medium(prompt_tasks={"compose": 3.0, "text": 1.0, "prefer": 1.0, "quality": 1.0})
    assert mix.rewards == {"geneval": 1.0, "ocr": 1.0, "pickscore": 1.0, "deqa": 1.0}
    assert GRPOConfig.sd35_medium(rewards={"text": 1.0}).rewards == {"text": 1.0}  # given rewards win
    assert NFTConfig.sd35_medium().rewards == {"pickscore": 1.0} and AWMConfig.sd35_medium().rewards == {
        "pickscore": 1.0}
    # The tiny world's configs keep its own rewards.
    assert GRPOConfig().rewards == {"compose": 1.0} and NFTConfig().rewards == {"prefer": 1.0}
    assert set(SD35_TASK_REWARDS.values()) == {"geneval", "ocr", "pickscore", "deqa"}


def test_which_task_a_reward_scores(tmp_path, monkeypatch):
    assert [reward_task(n) for n in ("geneval", "ocr", "pickscore:/x", "deqa", "aesthetic")] == [
        "compose", "text", "prefer", "quality", "quality"]
    assert reward_task("compose") == "compose" and reward_task("remote:http://h:1") is None
    monkeypatch.setenv("HOME", str(tmp_path))
    assert reward_argument("pickscore") == str(tmp_path / ".cache/flowopd/rewards/pickscore")
    assert reward_argument("pickscore:~/ps") == str(tmp_path / "ps")
    assert reward_argument("geneval") == "http://127.0.0.1:18085" and reward_argument("ocr") is None


def test_a_real_image_reward_scores_its_tasks_prompts_in_a_mix():
    from flowopd.training.rollout import reward_applies

    tasks, text, compose = ["compose", "text", "prefer"], {"task": "text"}, {"task": "compose"}
    assert reward_applies("ocr", text, tasks) and not reward_applies("ocr", compose, tasks)
    assert reward_applies("geneval:http://h:1", compose, tasks) and not reward_applies("geneval", text, tasks)
    assert not reward_applies("pickscore:/x", text, tasks) and reward_applies("pickscore:/x", {"task": "prefer"}, tasks)
    assert reward_applies("deqa", text, tasks) and reward_applies("remote:http://h:1", compose, tasks)  # every prompt
    assert reward_applies("ocr", compose, ["compose"])  # its task is not trained: it scores every prompt
    assert reward_applies("text", text, tasks) and not reward_applies("text", compose, tasks)  # the tiny world's
