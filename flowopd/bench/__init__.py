"""Benchmarks of the library's own code paths (``flowopd bench ...``).

* :mod:`.gpu`: one Flow-OPD iteration on an SD3.5-Medium-shaped transformer with random weights, in our
  layout (one base, named adapters) and in the released code's (a full model copy per teacher and anchor).

Importing this package costs nothing; the modules import torch and diffusers.
"""
