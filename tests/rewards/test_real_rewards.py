"""Real-image rewards: OCR on rendered photos of text, PickScore and the aesthetic predictor on tiny random
CLIPs saved to a folder in the test (nothing is downloaded), and the messages when their weights are missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from flowopd.rewards import get_reward
from flowopd.rewards.clip import RewardWeightsMissing

WORDS = ["hello", "a", "cat", "dog", "on", "the", "sign", "photo", "of", "red", "blue"]


def _photo(word: str, side: int, seed: int = 0) -> Image.Image:
    """A sign with ``word`` on a noisy background, like a generated picture of a shop sign."""
    g = torch.Generator().manual_seed(seed)
    noise = (torch.rand(side, side, 3, generator=g) * 60 + torch.tensor([150.0, 120, 90])).byte().numpy()
    image = Image.fromarray(noise)
    draw = ImageDraw.Draw(image)
    draw.rectangle([side * 0.08, side * 0.35, side * 0.92, side * 0.65], fill=(245, 240, 225))
    draw.text((side * 0.14, side * 0.4), word, fill=(25, 25, 30), font_size=side // 7)
    return image


def test_ocr_reads_signs_in_photos():
    images = [_photo("OPEN", 512), _photo("Bakery", 256, seed=1), _photo("SALE", 384, seed=2), _photo("OPEN", 256)]
    prompts = ['a shop sign that says "OPEN"', 'a sign reading "Bakery"', "a photo of a sign", "a sign"]
    metadata = [{}, {}, {}, {"target": "CLOSED"}]  # a record's target wins over the prompt's quotes
    scores = get_reward("ocr")(images, prompts, metadata)
    assert scores[:3] == [1.0, 1.0, 0.0]  # no target: nothing to read, 0
    assert scores[3] < 0.5  # "OPEN" read where "CLOSED" was asked
    blank = get_reward("ocr")([Image.new("RGB", (256, 256), "gray")], ['"OPEN"'], [{}])
    assert blank == [0.0]


def _tiny_clip(folder: Path, seed: int = 0) -> None:
    """A random CLIP (32 px images, 16-d embeddings) and its processor, saved as transformers does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", *WORDS])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>", special_tokens=[("<bos>", 2),
                                                                                               ("<eos>", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>",
                                        pad_token="<pad>", unk_token="<unk>", model_max_length=16)
    config = CLIPConfig(text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                                         bos_token_id=2, eos_token_id=3, pad_token_id=0),
                        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=32, patch_size=8),
                        projection_dim=16)
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    _tiny_clip(folder)
    return folder


def _reference(folder: Path, images, prompts):
    """CLIPModel.forward's own outputs (logits and unit image embeddings), a path independent of the rewards'."""
    from transformers import AutoModel, AutoProcessor

    model, processor = AutoModel.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder)
    inputs = processor(text=prompts, images=images, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    return out.logits_per_image.diagonal(), out.image_embeds


def test_pickscore_is_the_clip_logit_over_26(clip_folder):
    images = [_photo("cat", 64, seed=s) for s in range(3)]
    prompts = ["a photo of a cat", "a red sign", "the blue dog on a sign"]
    reward = get_reward(f"pickscore:{clip_folder}")
    assert get_reward(f"pickscore:{clip_folder}") is reward  # loaded once
    logits, _ = _reference(clip_folder, images, prompts)
    assert reward(images, prompts, [{}] * 3) == pytest.approx((logits / 26).tolist(), abs=1e-5)
    tensor = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) / 255 for im in images])  # [N, 3, H, W]
    assert reward(tensor, prompts, [{}] * 3) == pytest.approx(reward(images, prompts, [{}] * 3), abs=1e-5)


def test_aesthetic_is_the_mlp_on_unit_clip_embeddings(clip_folder, tmp_path):
    folder = tmp_path / "aesthetic"
    _tiny_clip(folder)
    torch.manual_seed(3)
    head = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 4),
                               torch.nn.Dropout(0.1), torch.nn.Linear(4, 1))
    state = {f"layers.{k}": v for k, v in head.state_dict().items()}  # the release's key names
    torch.save(state, folder / "sac+logos+ava1-l14-linearMSE.pth")
    images = [_photo("dog", 48, seed=s) for s in range(2)]
    _, embeds = _reference(folder, images, ["a", "a"])
    with torch.no_grad():
        expected = (head.eval()(embeds)[:, 0] / 10).tolist()
    assert get_reward(f"aesthetic:{folder}")(images, ["", ""], [{}, {}]) == pytest.approx(expected, abs=1e-5)


def test_missing_weights_name_the_path_and_how_to_get_them(clip_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the default folders live under ~/.cache/flowopd/rewards
    expected = tmp_path / ".cache" / "flowopd" / "rewards" / "pickscore"
    with pytest.raises(RewardWeightsMissing, match=rf"pickscore reward needs its weights in {expected}, but there is "
                                                   r"no folder .*yuvalkirstain/PickScore_v1.*\"pickscore:/path/to"):
        get_reward("pickscore")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"{empty} has no config.json.*openai/clip-vit-large-patch14"):
        get_reward(f"aesthetic:{empty}")
    with pytest.raises(RewardWeightsMissing, match=r"needs its MLP head in .*sac\+logos\+ava1-l14-linearMSE.pth or "
                                                   r"aesthetic_head.safetensors"):
        get_reward(f"aesthetic:{clip_folder}")  # a CLIP without the head


def test_a_file_that_is_not_an_aesthetic_head(clip_folder, tmp_path):
    from safetensors.torch import save_file

    from flowopd.rewards.aesthetic import load_head

    save_file({"layers.0.weight": torch.zeros(4, 16), "layers.0.bias": torch.zeros(4)}, tmp_path / "h.safetensors")
    with pytest.raises(ValueError, match="is not an aesthetic head: expected .* chain down to one output"):
        load_head(tmp_path / "h.safetensors")
