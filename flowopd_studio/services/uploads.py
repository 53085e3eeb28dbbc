"""Files uploaded from the browser: a LoRA to import, an image set (a zip) for an SFT teacher.

The same checks as their path forms (a LoRA is then read by the import, an image set by
:func:`flowopd.datasets.load_image_set`, the reader of ``flowopd train sft --data``), plus what an upload needs:
size and file-count caps, and a zip that cannot write outside its folder (zip-slip) or carry symlinks.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

LORA_MAX_BYTES = 2 * 1024 ** 3  # an SD3.5 Large LoRA of rank 128 is about 1 GiB
ZIP_MAX_BYTES = 1024 ** 3  # the uploaded archive
ZIP_MAX_FILES = 20_000
ZIP_MAX_UNPACKED = 4 * 1024 ** 3
IMAGE_SET_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".txt", ".jsonl"}
UPLOADS_DIR = "uploads"  # under the app's data folder: uploads/image-sets/<name>


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
    archive, dest = Path(archive), Path(dest)
    if archive.stat().st_size > max_bytes:
        raise UploadRefused(f"Image set upload: the zip is over the {max_bytes / 1024 ** 2:.0f} MiB cap: give the "
                            "folder's path on the server (sft data) instead")
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise UploadRefused(f"Image set upload: {archive.name} is not a zip archive: zip the folder of images "
                            "with their .txt captions or metadata.jsonl") from None
    with zf:
        entries = [i for i in zf.infolist() if not i.is_dir() and not _ignored(i.filename)]
        if len(entries) > max_files:
            raise UploadRefused(f"Image set upload: {len(entries)} files, over the {max_files} cap")
        if sum(i.file_size for i in entries) > max_unpacked:
            raise UploadRefused(f"Image set upload: it unpacks to over {max_unpacked / 1024 ** 3:.0f} GiB")
        for info in entries:
            _check_entry(info)
        if dest.exists():
            raise UploadRefused(f"Image set upload: {dest} exists already: pick another teacher name")
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


def _check_entry(info: zipfile.ZipInfo) -> None:
    name = info.filename
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or ":" in name:
        raise UploadRefused(f"Image set upload: entry {name!r} points outside the set's folder: the zip is refused")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UploadRefused(f"Image set upload: entry {name!r} is a symlink: zip the files themselves")
    if path.suffix.lower() not in IMAGE_SET_SUFFIXES:
        raise UploadRefused(f"Image set upload: entry {name!r} is not an image, a .txt caption or a metadata.jsonl "
                            f"(allowed: {', '.join(sorted(IMAGE_SET_SUFFIXES))})")
