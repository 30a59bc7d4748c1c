"""Reading a process's memory: the kernel's resident high-water mark, and the
accelerator's own peak where it keeps one. No flags, so every script can import it."""

from pathlib import Path

import jax

STATUS = Path("/proc/self/status")
GIB = 2.0**30


def status_kib(field: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Sets the high-water mark to the current resident size (Linux ≥ 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def device_memory() -> dict:
    """The accelerator's own peak (``memory_stats``), where the device keeps one: on a
    GPU the host's resident memory says nothing about the arrays on the device."""
    stats = jax.devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return {"device_peak_gib": None}
    return {
        "device": str(jax.devices()[0]),
        "device_peak_gib": stats["peak_bytes_in_use"] / GIB,
        "device_limit_gib": stats.get("bytes_limit", 0) / GIB or None,
    }
