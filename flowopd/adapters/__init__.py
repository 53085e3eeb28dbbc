"""One frozen base transformer, many named LoRA adapters (docs/method.md, "Adapters on one base"): teachers, anchor
and student.

Adapters live on ``model.transformer`` through diffusers' PEFT integration (``add_adapter`` /
``set_adapter``); switching costs about a millisecond, against the 3-5 full model copies of the released
code. *Which adapter runs* (:func:`use_adapter`) and *which adapter trains* (:func:`trainable_parameters`)
are kept apart: switching restores every LoRA parameter's ``requires_grad``.

* :mod:`.registry`: which adapters a model has and which parameters belong to which;
* :mod:`.lora`: add, train and remove adapters;
* :mod:`.switching`: run one adapter, or the base;
* :mod:`.merge`: run an adapter folded into the base weights;
* :mod:`.full`: a full fine-tune held as an adapter (a weight delta on every Linear layer);
* :mod:`.files`: adapter folders on disk (save, load, replace) and their checks;
* :mod:`.formats`: other LoRA formats (diffusers, ComfyUI, peft): detection and key conversions;
* :mod:`.export`: writing an adapter in those formats (and fused into the base), loading them back.
"""

from .files import (
    META_NAME,
    WEIGHTS_NAME,
    adapter_guidance,
    adapter_metadata,
    base_model_id,
    load_adapter,
    read_adapter_metadata,
    replace_adapter,
    save_adapter,
)
from .full import adapter_deltas, add_full_delta, identity_factors, is_full_delta, linear_layers, skip_identities
from .lora import add_lora, add_lora_by_layer, delete_adapter, drop_adapter, trainable_parameters
from .merge import merged_adapter
from .registry import AdapterError, adapter_names, adapter_of_parameter, adapter_parameters, lora_layers
from .switching import use_adapter

__all__ = ["META_NAME", "WEIGHTS_NAME", "AdapterError", "adapter_deltas", "adapter_guidance", "adapter_metadata",
           "adapter_names", "adapter_of_parameter", "adapter_parameters", "add_full_delta", "add_lora",
           "add_lora_by_layer", "base_model_id", "delete_adapter", "drop_adapter", "identity_factors",
           "is_full_delta", "linear_layers", "load_adapter", "lora_layers", "merged_adapter",
           "read_adapter_metadata", "replace_adapter", "save_adapter", "skip_identities", "trainable_parameters",
           "use_adapter"]
