"""The configs' foundation, torch-free: the base class and its registry (:mod:`.base`), the named choices
(:mod:`.choices`), shared checks (:mod:`.fields`), the RL configs' shared fields (:mod:`.rl`), presets
(:mod:`.presets`), and the evaluation and pretraining configs. A method's own config lives in its folder,
``flowopd.methods.<kind>.config``.
"""

from .base import ConfigBase, FieldInfo, config_class, config_kinds, fail, option, read_config

__all__ = ["ConfigBase", "FieldInfo", "config_class", "config_kinds", "fail", "option", "read_config"]
