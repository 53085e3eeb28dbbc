"""Uploads from the browser (services/uploads.py): an image-set zip unpacked only when it is safe and within the
caps (zip-slip, absolute names, symlinks, other files and oversize archives refused, nothing written); a LoRA
upload only as a .safetensors within its cap."""

from __future__ import annotations

import stat
import zipfile

import pytest

from flowopd_studio.services.uploads import UploadRefused, check_lora_upload, unpack_image_set


def _zip(path, entries: dict[str, bytes], symlink: str | None = None):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_a_set_in_a_top_folder_unpacks_to_that_folder(tmp_path, blank_image) -> None:
    import io

    image = io.BytesIO()
    blank_image.save(image, "PNG")
    archive = _zip(tmp_path / "set.zip", {"myset/a.png": image.getvalue(), "myset/a.txt": b"a sign that says hi",
                                          "__MACOSX/myset/._a.png": b"junk"})
    folder = unpack_image_set(archive, tmp_path / "out")
    assert folder == tmp_path / "out" / "myset" and sorted(p.name for p in folder.iterdir()) == ["a.png", "a.txt"]
    from flowopd.datasets import load_image_set

    assert load_image_set(folder, 32).captions == ["a sign that says hi"]


@pytest.mark.parametrize(("entries", "symlink", "message"), [
    ({"../evil.png": b"x"}, None, "points outside the set's folder"),
    ({"/abs/evil.png": b"x"}, None, "points outside the set's folder"),
    ({"a.png": b"x"}, "link.png", "is a symlink"),
    ({"a.png": b"x", "run.sh": b"rm -rf /"}, None, "is not an image, a .txt caption or a metadata.jsonl"),
])
def test_unsafe_archives_are_refused_and_nothing_is_written(tmp_path, entries, symlink, message) -> None:
    archive = _zip(tmp_path / "bad.zip", entries, symlink)
    with pytest.raises(UploadRefused, match=message):
        unpack_image_set(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil.png").exists()


def test_caps_and_non_zips(tmp_path) -> None:
    archive = _zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(5)})
    with pytest.raises(UploadRefused, match="5 files, over the 3 cap"):
        unpack_image_set(archive, tmp_path / "out", max_files=3)
    with pytest.raises(UploadRefused, match="over the 0 MiB cap"):
        unpack_image_set(archive, tmp_path / "out", max_bytes=10)
    with pytest.raises(UploadRefused, match="unpacks to over"):
        unpack_image_set(archive, tmp_path / "out", max_unpacked=2)
    (tmp_path / "not.zip").write_bytes(b"plain text")
    with pytest.raises(UploadRefused, match="is not a zip archive"):
        unpack_image_set(tmp_path / "not.zip", tmp_path / "out")


def test_a_lora_upload_is_a_safetensors_within_the_cap(tmp_path) -> None:
    (tmp_path / "lora.ckpt").write_bytes(b"x")
    with pytest.raises(UploadRefused, match="is not a .safetensors file"):
        check_lora_upload(tmp_path / "lora.ckpt")
    (tmp_path / "lora.safetensors").write_bytes(b"x" * 100)
    with pytest.raises(UploadRefused, match="over the 0 MiB cap"):
        check_lora_upload(tmp_path / "lora.safetensors", max_bytes=10)
    assert check_lora_upload(tmp_path / "lora.safetensors") == tmp_path / "lora.safetensors"


def test_a_prompt_set_zip_is_unpacked_read_and_refused_when_it_cannot_be_used(tmp_path) -> None:
    """A Flow-GRPO-layout zip (train/test metadata) unpacks under uploads/prompt-sets and is read as a run reads
    it; a set a run could not use (a text prompt with nothing to draw) or a foreign file is refused, and nothing
    is left behind."""
    import json

    from flowopd_studio.services.uploads import prompt_set_upload

    rows = {"train": [{"prompt": 'a sign that says "hello"'}, {"prompt": 'a mug printed with "tea"'}],
            "test": [{"prompt": 'a poster that says "moon"'}]}
    entries = {f"ocr/{split}_metadata.jsonl": "".join(json.dumps(r) + "\n" for r in recs).encode()
               for split, recs in rows.items()}
    folder, counts = prompt_set_upload(tmp_path / "home", str(_zip(tmp_path / "ocr.zip", entries)), "my ocr", "text")
    assert folder == tmp_path / "home" / "uploads" / "prompt-sets" / "my-ocr-1" / "ocr"
    assert counts == {"train": 2, "test": 1} and (folder / "test_metadata.jsonl").is_file()
    bad = _zip(tmp_path / "bad.zip", {"train.txt": b"a cat\n", "test.txt": b"a dog\n"})
    with pytest.raises(UploadRefused, match=r"prompt_sets\['text'\]: prompt 1 of the train split .* no text to draw"):
        prompt_set_upload(tmp_path / "home", str(bad), "plain", "text")
    assert not (tmp_path / "home" / "uploads" / "prompt-sets" / "plain-1").exists()
    assert prompt_set_upload(tmp_path / "home", str(bad), "plain", "prefer")[1] == {"train": 1, "test": 1}
    with pytest.raises(UploadRefused, match="Prompt set upload: entry 'run.sh' is not a .txt or .jsonl prompt file"):
        prompt_set_upload(tmp_path / "home", str(_zip(tmp_path / "x.zip", {"run.sh": b"rm -rf /"})), "x", "text")
    with pytest.raises(UploadRefused, match="no file uploaded"):
        prompt_set_upload(tmp_path / "home", None, "x", "text")
