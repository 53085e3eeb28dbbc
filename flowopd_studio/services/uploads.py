"""Files uploaded from the browser: a LoRA to import, an image set (a zip) for an SFT teacher, a prompt set (a zip
in Flow-GRPO's layout) for a task's ``prompt_sets``.

The same checks as their path forms (a LoRA is then read by the import, an image set by
:func:`flowopd.datasets.load_image_set`, the reader of ``flowopd train sft --data``), plus what an upload needs:
size and file-count caps, and a zip that cannot write outside its folder (zip-slip) or carry symlinks.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

LORA_MAX_BYTES = 2 * 1024 ** 3  # an SD3.5 Large LoRA of rank 128 is about 1 GiB
ZIP_MAX_BYTES = 1024 ** 3  # the uploaded archive
ZIP_MAX_FILES = 20_000
ZIP_MAX_UNPACKED = 4 * 1024 ** 3
IMAGE_SET_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".txt", ".jsonl"}
PROMPT_ZIP_MAX_BYTES = 256 * 1024 ** 2  # Flow-GRPO's largest prompt file (PickScore's train.txt) is a few MiB
PROMPT_ZIP_MAX_FILES = 16
PROMPT_ZIP_MAX_UNPACKED = 1024 ** 3
UPLOADS_DIR = "uploads"  # under the app's data folder: uploads/image-sets/<name>, uploads/prompt-sets/<name>


class UploadRefused(ValueError):
    """An upload that breaks a limit or a rule; the message names the field and the fix."""


def check_lora_upload(path: str | Path, max_bytes: int = LORA_MAX_BYTES) -> Path:
    """The uploaded LoRA file, if it is a ``.safetensors`` file within the size cap."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise UploadRefused(f"LoRA upload: {path.name} is not a .safetensors file: upload the LoRA's .safetensors "
                            "(a peft folder: upload its adapter_model.safetensors with the path import instead)")
    size = path.stat().st_size
    if size > max_bytes:
        raise UploadRefused(f"LoRA upload: {path.name} is {size / 1024 ** 2:.0f} MiB, over the "
                            f"{max_bytes / 1024 ** 2:.0f} MiB cap: import it by its path on the server instead")
    return path


def unpack_image_set(archive: str | Path, dest: str | Path, *, max_bytes: int = ZIP_MAX_BYTES,
                     max_files: int = ZIP_MAX_FILES, max_unpacked: int = ZIP_MAX_UNPACKED) -> Path:
    """Unpack an image-set zip into the new folder ``dest`` and return the folder holding the set (the zip's
    single top folder, if it has one). Nothing is written when the archive is refused.

    Raises:
        UploadRefused: not a zip, over a cap, an entry outside the folder (absolute or ``..``), a symlink, a file
            that is not an image, a ``.txt`` caption or a ``metadata.jsonl``.
    """
    return _unpack(archive, dest, IMAGE_SET, max_bytes=max_bytes, max_files=max_files, max_unpacked=max_unpacked)


def unpack_prompt_set(archive: str | Path, dest: str | Path) -> Path:
    """Unpack a prompt-set zip (Flow-GRPO's layout: ``train.txt`` / ``test.txt`` or ``train_metadata.jsonl`` /
    ``test_metadata.jsonl``) into the new folder ``dest``; returns the folder holding the files. The same rules
    as an image set's, with its own caps (:data:`PROMPT_SET`)."""
    return _unpack(archive, dest, PROMPT_SET, max_bytes=PROMPT_ZIP_MAX_BYTES, max_files=PROMPT_ZIP_MAX_FILES,
                   max_unpacked=PROMPT_ZIP_MAX_UNPACKED)


@dataclass(frozen=True)
class _ZipKind:
    what: str  # the field the messages name
    suffixes: frozenset
    holds: str  # what the zip should hold, for the messages
    files: str  # what each entry may be
    instead: str  # the path form to use instead of a too-large upload


IMAGE_SET = _ZipKind("Image set upload", frozenset(IMAGE_SET_SUFFIXES), "the folder of images with their .txt "
                     "captions or metadata.jsonl", "an image, a .txt caption or a metadata.jsonl",
                     "give the folder's path on the server (sft data) instead")
PROMPT_SET = _ZipKind("Prompt set upload", frozenset({".txt", ".jsonl"}), "the folder with train.txt and test.txt "
                      "(or train_metadata.jsonl and test_metadata.jsonl)", "a .txt or .jsonl prompt file",
                      "give the folder's path on the server (prompt_sets) instead")


def _unpack(archive: str | Path, dest: str | Path, kind: _ZipKind, *, max_bytes: int, max_files: int,
            max_unpacked: int) -> Path:
    archive, dest, what = Path(archive), Path(dest), kind.what
    if archive.stat().st_size > max_bytes:
        raise UploadRefused(f"{what}: the zip is over the {max_bytes / 1024 ** 2:.0f} MiB cap: {kind.instead}")
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise UploadRefused(f"{what}: {archive.name} is not a zip archive: zip {kind.holds}") from None
    with zf:
        entries = [i for i in zf.infolist() if not i.is_dir() and not _ignored(i.filename)]
        if len(entries) > max_files:
            raise UploadRefused(f"{what}: {len(entries)} files, over the {max_files} cap")
        if sum(i.file_size for i in entries) > max_unpacked:
            raise UploadRefused(f"{what}: it unpacks to over {max_unpacked / 1024 ** 2:.0f} MiB")
        for info in entries:
            _check_entry(info, kind)
        if dest.exists():
            raise UploadRefused(f"{what}: {dest} exists already: pick another name")
        dest.mkdir(parents=True)
        try:
            for info in entries:
                target = dest.joinpath(*PurePosixPath(info.filename).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    children = [p for p in dest.iterdir()]
    return children[0] if len(children) == 1 and children[0].is_dir() else dest


def _ignored(name: str) -> bool:
    """What zip tools add beside the files (macOS resource forks, Finder metadata)."""
    parts = PurePosixPath(name).parts
    return any(p == "__MACOSX" or p.startswith("._") or p == ".DS_Store" for p in parts)


def _check_entry(info: zipfile.ZipInfo, kind: _ZipKind) -> None:
    name, what = info.filename, kind.what
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or ":" in name:
        raise UploadRefused(f"{what}: entry {name!r} points outside the set's folder: the zip is refused")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UploadRefused(f"{what}: entry {name!r} is a symlink: zip the files themselves")
    if path.suffix.lower() not in kind.suffixes:
        raise UploadRefused(f"{what}: entry {name!r} is not {kind.files} (allowed: "
                            f"{', '.join(sorted(kind.suffixes))}): zip {kind.holds}")


def new_upload_folder(data_folder: str | Path, kind: str, name: str | None, archive: str | Path) -> Path:
    """A fresh ``DATA/uploads/<kind>/<name>-<n>`` for an unpacked archive: ``name`` (else the archive's stem)
    reduced to letters, digits, ``-`` and ``_``, with the first unused ``n``."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", (name or "").strip() or Path(archive).stem).strip("-") or kind
    root = Path(data_folder) / UPLOADS_DIR / kind
    return next(root / f"{stem}-{i}" for i in range(1, 10_000) if not (root / f"{stem}-{i}").exists())


def prompt_set_upload(data_folder: Path, archive: str | None, name: str, task: str) -> tuple[Path, dict]:
    """Unpack an uploaded prompt-set zip for ``task`` into ``DATA/uploads/prompt-sets/<name>-<n>`` and read both
    splits as a run would (:func:`flowopd.world.prompt_sets.read_prompt_set`); returns (folder, split -> prompts).

    Raises:
        UploadRefused: no file, an unsafe or oversize zip, or a set that cannot be read (the folder is removed).
    """
    from flowopd.world.prompt_sets import SPLITS, PromptSetError, read_prompt_set
    from flowopd.world.prompts import TASKS

    if not archive:
        raise UploadRefused("Prompt set upload: no file uploaded: drop a .zip on the upload box first")
    if task not in TASKS:
        raise UploadRefused(f"Prompt set upload: task {task!r} is unknown: pick one of {', '.join(TASKS)}")
    dest = new_upload_folder(data_folder, "prompt-sets", name, archive)
    folder = unpack_prompt_set(archive, dest)
    try:
        counts = {split: len(read_prompt_set(str(folder), task, split)) for split in SPLITS}
    except PromptSetError as err:
        shutil.rmtree(dest, ignore_errors=True)
        raise UploadRefused(f"Prompt set upload: {err}") from None
    return folder, counts
