"""The training methods, one folder each (``config``, ``loss``, ``trainer``), and their registry
(:mod:`.registry`): GRPO, DiffusionNFT, AWM and SFT teachers, and the on-policy distillation of the student.

Importing this package registers the built-in methods; it imports no torch.
"""

import importlib

from .registry import Flag, Method, get_method, methods, register_method, teacher_methods, unregister_method

# The built-in methods, registered in the order the command line and the app list them.
BUILTIN_METHODS = ("grpo", "nft", "awm", "sft", "opd")
for _kind in BUILTIN_METHODS:
    importlib.import_module(f"{__name__}.{_kind}")

__all__ = ["BUILTIN_METHODS", "Flag", "Method", "get_method", "methods", "register_method", "teacher_methods",
           "unregister_method"]
