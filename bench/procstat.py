"""CPU time and memory of processes, read from /proc (Linux)."""

from __future__ import annotations

import os

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of the process, in KiB."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values


def reset_peak(pid: int) -> bool:
    """Resets VmHWM to the current RSS (writing 5 to clear_refs); False when not permitted."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class Sampler:
    """CPU deltas and peak memory of a set of named processes over one scenario."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_reset = all([reset_peak(pid) for pid in pids.values()])
        self._cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def cpu(self) -> dict[str, float]:
        return {name: round(cpu_seconds(pid) - self._cpu0[name], 3) for name, pid in self.pids.items()}

    def peaks_mib(self) -> dict[str, float]:
        return {name: round(memory_kib(pid)["VmHWM"] / 1024, 1) for name, pid in self.pids.items()}
