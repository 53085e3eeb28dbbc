"""Model backends: the built-in tiny model and Stable Diffusion 3.5, behind one :class:`FlowModel` API.

``load_model`` picks the backend from what ``path`` is. Importing this package costs nothing: the backends
(torch, diffusers; transformers for SD3) are imported when first used, because those imports are slow and
:mod:`flowopd.configs` reads :mod:`.presets` without torch.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .presets import DEFAULT_MODEL_DIR, LORA_TARGET_MODULES, PRESETS, SD35_MEDIUM

if TYPE_CHECKING:
    import torch

    from .base import FlowModel, PromptEmbeds
    from .tiny import TinyFlowModel

# "owner/name" as the Hub spells repository ids; anything else is a local path.
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_LAZY = {"FlowModel": ".base", "PromptEmbeds": ".base", "TinyFlowModel": ".tiny"}

__all__ = ["DEFAULT_MODEL_DIR", "LORA_TARGET_MODULES", "PRESETS", "SD35_MEDIUM", "FlowModel", "PromptEmbeds",
           "TinyFlowModel", "load_model", "looks_like_hub_id"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def looks_like_hub_id(name: str) -> bool:
    """True for ``owner/name`` strings such as ``stabilityai/stable-diffusion-3.5-medium``."""
    return bool(_HUB_ID_RE.match(name)) and ".." not in name


def load_model(path: str | Path | None = None, *, device: torch.device | str = "cpu",
               resolution: int | None = None) -> FlowModel:
    """Load a model by what ``path`` is; ``resolution``: an SD3 base's image side (None: its family's default;
    a tiny model draws its own size, and another one is refused).

    * ``None``: the built-in tiny checkpoint (``DEFAULT_MODEL_DIR``);
    * a folder whose ``config.json`` says ``"backend": "tiny"``: a tiny checkpoint (``flowopd pretrain``);
    * a folder with ``model_index.json``, or a Hub id ``owner/name``: an SD3/SD3.5 diffusers pipeline.

    Raises:
        FileNotFoundError: ``path`` does not exist and is not a Hub id (or the Hub id is not available).
        ValueError: the folder is neither kind of checkpoint, or is corrupt.
    """
    if path is None:
        return _tiny(DEFAULT_MODEL_DIR, device, resolution)
    folder = Path(path).expanduser()
    if folder.is_dir():
        config = folder / "config.json"
        if config.is_file():
            try:
                backend = json.loads(config.read_text()).get("backend")
            except (json.JSONDecodeError, AttributeError) as err:
                raise ValueError(f"{config} is not a valid model config ({err}): re-run `flowopd pretrain`") from None
            if backend == "tiny":
                return _tiny(folder, device, resolution)
            if not (folder / "model_index.json").is_file():
                raise ValueError(f"{folder} has a config.json with backend {backend!r}, which flowopd cannot "
                                 "load: pass a tiny checkpoint (backend 'tiny') or a diffusers SD3 pipeline folder")
        if (folder / "model_index.json").is_file():
            from .sd3 import SD3FlowModel

            return SD3FlowModel.from_pretrained(folder, device=device, image_size=resolution)
        raise ValueError(f"{folder} is not a model folder (no config.json or model_index.json): pass a folder "
                         "written by `flowopd pretrain`, a diffusers SD3 pipeline folder, or omit --model")
    if folder.exists():
        raise ValueError(f"{path} is a file, not a model folder: pass the folder that contains it")
    if looks_like_hub_id(str(path)):
        from .sd3 import SD3FlowModel

        return SD3FlowModel.from_pretrained(str(path), device=device, image_size=resolution)
    raise FileNotFoundError(f"model folder {path} does not exist: pass a folder written by `flowopd pretrain`, "
                            "a diffusers SD3 pipeline folder or a Hub id such as "
                            "stabilityai/stable-diffusion-3.5-medium, or omit --model for the built-in tiny model")


def _tiny(folder: Path, device: torch.device | str, resolution: int | None) -> TinyFlowModel:
    from .tiny import TinyFlowModel

    model = TinyFlowModel.load(folder).to(device)
    if resolution is not None and resolution != model.image_size:
        raise ValueError(f"resolution={resolution} is invalid for the tiny model {folder}, which draws "
                         f"{model.image_size} px images: leave resolution unset (it is for SD3 bases)")
    return model
