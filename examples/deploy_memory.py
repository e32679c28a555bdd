"""The peak resident memory of one `deploy.OnnxDecoder.sample` call of N rows, in a fresh process (Linux).

    python examples/deploy_memory.py decoder.onnx 1 64 1024 65536 262144

Each row count runs in a process of its own (a process keeps what its allocator cached, so one process
would carry a large call's memory into the next). The peak is the kernel's high-water mark (VmHWM), reset
through /proc/self/clear_refs just before the call.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MIB = 1024 * 1024


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status (Linux only)")


def one(decoder: str, rows: int) -> None:
    """Measure one call of `rows` rows in this process and print a tab-separated line (MiB)."""
    import numpy as np

    start = _status("VmRSS")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cvae_bench"))
    from deploy import OnnxDecoder

    imported = _status("VmRSS")
    d = OnnxDecoder(decoder, ["CPUExecutionProvider"])
    built = _status("VmRSS")
    labels = np.arange(rows) % d.num_classes
    d.sample(labels[:1], seed=0)  # the first call allocates once and for all
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    out = d.sample(labels, seed=0)
    peak = _status("VmHWM")
    cells = [rows, start / MIB, imported / MIB, built / MIB, peak / MIB, (peak - before) / MIB, out.nbytes / MIB]
    print("\t".join(f"{c:,.1f}" if isinstance(c, float) else str(c) for c in cells))


def main() -> None:
    if len(sys.argv) >= 4 and sys.argv[1] == "--one":
        one(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) < 3:
        sys.exit("error: usage: deploy_memory.py DECODER.onnx ROWS [ROWS ...]")
    print("rows\tpython+numpy\tafter import\tafter session\tpeak\tadded by the call\toutput (MiB)")
    for rows in sys.argv[2:]:
        subprocess.run([sys.executable, __file__, "--one", sys.argv[1], rows], check=True)


if __name__ == "__main__":
    main()
