"""Time `dispatch preview NA` in new processes: from the start of the process until NA.pdf is on disk.

    python bench/preview.py              # 5 runs, the median
    python bench/preview.py --runs 9

The sample campaign is copied to a temporary folder and previewed once (journal, bytecode); then, each
run, NA.pdf is deleted and `dispatch preview NA` started, and the file is looked for every 2 ms. The
same measure as step 4 of bench/render.py, repeated, without rendering the other 124 letters first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DISPATCH = str(Path(sys.executable).parent / "dispatch")


def run_once(folder: Path, pdf: Path, recipient: str) -> tuple[float, float]:
    """Seconds until the PDF exists, and until the command ends (its PNG images written)."""
    pdf.unlink(missing_ok=True)
    started = time.perf_counter()
    process = subprocess.Popen([DISPATCH, "-q", "preview", recipient], cwd=folder, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    until_pdf = None
    while process.poll() is None:
        if until_pdf is None and pdf.exists():
            until_pdf = time.perf_counter() - started
        time.sleep(0.002)
    ended = time.perf_counter() - started
    _, stderr = process.communicate()
    if process.returncode != 0 or not pdf.exists():
        sys.exit(f"dispatch preview {recipient} failed ({process.returncode}):\n{stderr}")
    return (until_pdf if until_pdf is not None else ended), ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs (default 5)")
    parser.add_argument("--recipient", default="NA", help="recipient id (default NA)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="dispatch-bench-preview-"))
    try:
        for name in ("dispatch.toml", "recipients.csv"):
            shutil.copy(REPO / name, folder / name)
        for name in ("letters", "templates"):
            shutil.copytree(REPO / name, folder / name)
        subprocess.run([DISPATCH, "-q", "preview", args.recipient], cwd=folder, check=True, capture_output=True)
        pdf = next((folder / "out").glob(f"*/{args.recipient}.pdf"))
        print(f"load average {os.getloadavg()[0]:.2f} at start")
        times = [run_once(folder, pdf, args.recipient) for _ in range(args.runs)]
        to_pdf = [t for t, _ in times]
        to_end = [t for _, t in times]
        print(f"PDF on disk after (s): {' '.join(f'{t:.2f}' for t in to_pdf)}; median {statistics.median(to_pdf):.2f}")
        print(f"command ended after (s): {' '.join(f'{t:.2f}' for t in to_end)}; median {statistics.median(to_end):.2f}")
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
