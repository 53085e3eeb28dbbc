"""What the benchmark measures besides time: memory (per device kind) and FLOPs.

Memory:

* CUDA: ``torch.cuda.memory_allocated`` (now) and ``torch.cuda.max_memory_allocated`` (peak since the last
  reset): the tensors PyTorch holds, not the caching allocator's reserve.
* CPU: the process's resident set size from ``/proc/self/status`` (``VmRSS`` now, ``VmHWM`` peak); the peak
  is reset by writing ``5`` to ``/proc/self/clear_refs`` (Linux). Where that is not possible the peak is
  ``resource.getrusage``'s ``ru_maxrss``, the peak of the whole process so far, and the method says so.
  RSS counts everything the process holds (Python, libraries, freed memory not returned to the system).

FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions and attention), with
formulas for the CPU attention kernels, which torch does not register.
"""

from __future__ import annotations

import re
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

_aten = torch.ops.aten


def _sdpa_cpu(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts CPU attention (``get_total_flops()`` after the block)."""
    return FlopCounterMode(display=False, custom_mapping={
        _aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
        _aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward})


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds ``fn()`` takes, the device's queued work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


class MemoryProbe:
    """Current and peak memory of ``device`` in bytes; :attr:`method` says what is measured."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated (tensors held by PyTorch on the GPU)"
        elif self._reset_rss_peak():
            self.method = "peak resident set size of the process (VmHWM, reset per design via /proc/self/clear_refs)"
        else:
            self.method = ("peak resident set size of the whole process so far (resource.getrusage ru_maxrss; "
                           "it cannot be reset, so a later design's peak includes the earlier one's)")

    @staticmethod
    def _reset_rss_peak() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return False
        return _status_kib("VmHWM") is not None

    def reset_peak(self) -> None:
        """Start a new peak from the current use."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._reset_rss_peak()

    def current(self) -> int:
        """Bytes in use now."""
        if self.device.type == "cuda":
            return int(torch.cuda.memory_allocated(self.device))
        kib = _status_kib("VmRSS")
        return (kib or 0) * 1024

    def peak(self) -> int:
        """Peak bytes since the last :meth:`reset_peak`."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        kib = _status_kib("VmHWM")
        if kib is None:
            kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return kib * 1024
