"""Image sets with captions: the tiny world's writer, the reader's two conventions, and clear errors for bad sets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from flowopd.datasets import DatasetError, load_image_set
from flowopd.world.dataset import write_dataset
from flowopd.world.splits import load_prompts


def _image(path, size=(32, 32), color=(200, 30, 30)) -> None:
    Image.new("RGB", size, color).save(path)


def test_the_world_writes_clean_train_renders_in_both_conventions(tmp_path):
    folder = write_dataset("text", 5, tmp_path / "text", seed=1)
    lines = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert [row["file_name"] for row in lines] == [f"0000{i}.png" for i in range(5)]
    train = {r["prompt"] for r in load_prompts("text", "train")}
    for row in lines:
        assert (folder / row["file_name"]).with_suffix(".txt").read_text().strip() == row["text"] in train
    data = load_image_set(folder, 32)
    assert data.images.shape == (5, 32, 32, 3) and data.images.dtype == np.uint8 and data.source == "metadata.jsonl"
    (folder / "metadata.jsonl").unlink()
    from_txt = load_image_set(folder, 32)
    assert from_txt.source == ".txt" and from_txt.captions == data.captions
    np.testing.assert_array_equal(from_txt.images, data.images)
    again = write_dataset("text", 5, tmp_path / "again", seed=1)  # the same arguments write the same set
    np.testing.assert_array_equal(load_image_set(again, 32).images, data.images)
    with pytest.raises(ValueError, match="already holds images"):
        write_dataset("text", 2, folder)


def test_metadata_wins_over_txt_captions(tmp_path):
    _image(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("from the txt file\n")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "from metadata"}) + "\n")
    assert load_image_set(tmp_path, 32).captions == ["from metadata"]


def test_larger_square_images_are_downscaled_others_refused(tmp_path):
    _image(tmp_path / "big.png", (96, 96))
    (tmp_path / "big.txt").write_text("a red square")
    data = load_image_set(tmp_path, 32)
    assert data.images.shape == (1, 32, 32, 3) and data.downscaled == 1 and "downscaled" in data.notes[0]
    assert tuple(data.images[0, 5, 5]) == (200, 30, 30)
    with pytest.raises(DatasetError, match=r"big.png is 96x96, not the model's 32x32: resize it to 32 px"):
        load_image_set(tmp_path, 32, resize="refuse")
    _image(tmp_path / "wide.png", (64, 32))
    (tmp_path / "wide.txt").write_text("a wide one")
    with pytest.raises(DatasetError, match=r"wide.png is 64x32, but the model takes square 32x32 images: crop it"):
        load_image_set(tmp_path, 32)
    (tmp_path / "wide.png").unlink()
    _image(tmp_path / "small.png", (16, 16))
    (tmp_path / "small.txt").write_text("a small one")
    with pytest.raises(DatasetError, match=r"small.png is 16x16, smaller than the model's 32x32: supply images of at "
                                           "least 32 px"):
        load_image_set(tmp_path, 32)


@pytest.mark.parametrize("case", ["missing caption", "empty caption", "unreadable image", "empty folder",
                                  "no folder", "metadata without text", "metadata not json", "metadata names a "
                                  "missing file"])
def test_bad_image_sets_name_the_file_and_the_fix(tmp_path, case):
    _image(tmp_path / "ok.png")
    (tmp_path / "ok.txt").write_text("fine")
    folder = tmp_path
    if case == "missing caption":
        _image(tmp_path / "cat.png")
        match = r"image .*cat.png has no caption: write cat.txt beside it"
    elif case == "empty caption":
        _image(tmp_path / "cat.png")
        (tmp_path / "cat.txt").write_text("  \n")
        match = r"caption .*cat.txt is empty: write the image's caption in it"
    elif case == "unreadable image":
        (tmp_path / "cat.png").write_bytes(b"not a png")
        (tmp_path / "cat.txt").write_text("a cat")
        match = r"cannot read image .*cat.png \(.*\): replace it with a PNG or JPEG file"
    elif case == "empty folder":
        folder = tmp_path / "empty"
        folder.mkdir()
        match = r"empty holds no images \(.png, .*\): add images with same-name .txt captions or a metadata.jsonl"
    elif case == "no folder":
        folder = tmp_path / "nowhere"
        match = r"image set folder .*nowhere does not exist"
    elif case == "metadata without text":
        (tmp_path / "metadata.jsonl").write_text('{"file_name": "ok.png", "text": "fine"}\n{"file_name": "ok.png"}\n')
        match = r'metadata.jsonl line 2 \(ok.png\) has no "text": add its caption'
    elif case == "metadata not json":
        (tmp_path / "metadata.jsonl").write_text("ok.png,fine\n")
        match = r"metadata.jsonl line 1 is not JSON .*: write one object per line"
    else:
        (tmp_path / "metadata.jsonl").write_text('{"file_name": "gone.png", "text": "x"}\n')
        match = r"metadata.jsonl line 1 names gone.png, which is not in .*: add the image or drop the line"
    with pytest.raises(DatasetError, match=match):
        load_image_set(folder, 32)


def test_a_regularization_set_of_the_models_own_samples_over_several_tasks(cli, small_model_dir, tmp_path):
    out = tmp_path / "reg"
    code, text, err = cli("world", "dataset", "--task", "prefer,quality", "--n", "4", "--source", "model",
                          "--model", small_model_dir, "--steps", "2", "--out", out)
    assert code == 0 and "4 prefer,quality samples with captions" in text, err
    data = load_image_set(out, 32)
    splits = [{r["prompt"] for r in load_prompts(t, "train")} for t in ("prefer", "quality")]
    assert [c in splits[i % 2] for i, c in enumerate(data.captions)] == [True] * 4  # the tasks in turn
    renders = load_image_set(write_dataset("prefer,quality", 4, tmp_path / "renders"), 32)
    assert renders.captions == data.captions and not np.array_equal(renders.images, data.images)
    code, _, err = cli("world", "dataset", "--task", "text", "--n", "2", "--model", small_model_dir, "--out",
                       tmp_path / "x")
    assert code == 2 and "add --source model" in err, err
    code, _, err = cli("world", "dataset", "--task", "text,lettering", "--n", "2", "--out", tmp_path / "y")
    assert code == 2 and "unknown task 'lettering'" in err, err
