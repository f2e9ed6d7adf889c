"""Time `dispatch render` against a naive WeasyPrint loop over the same merged HTML, in one run.

    python bench/render.py --recipients 125          # the sample campaign
    python bench/render.py --recipients 1000 --skip-naive   # memory with 1,000 recipients
    python bench/render.py --recipients 125 --typst         # also the Typst reference (bench/reference.typ)
    python bench/render.py --recipients 125 --whole         # also every letter rendered whole (--no-layers)
    python bench/render.py --recipients 125 --personalised  # the State in the body: `call on {{ state }}`

Steps, each in a fresh process, on a copy of the sample campaign in a temporary folder:
1. `dispatch render --format html` writes the merged HTML of every letter;
2. the naive loop: one process calling weasyprint.HTML(filename=f).write_pdf(...) for each file;
3. `dispatch render` cold (no PDFs, no journal), then again with nothing changed;
4. `dispatch preview NA` in a new process after NA.pdf was deleted (time until the PDF is on disk);
5. with --typst, the same letters typeset by Typst (bench/typst_reference.py) in a fresh process.
It checks that both ways give the same letters (text extracted with pypdf, page counts), then prints
wall times, CPU time, the ratio, pages per second and the peak memory of the process tree.
Extra recipients (beyond the 125 rows) are copies of the sample rows with new ids (with --personalised, and
a State of their own: "Namibia (2)", so that every letter's body differs).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DISPATCH = str(BIN / "dispatch")

TYPST = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from typst_reference import recipient_rows, render_typst
campaign = Path(sys.argv[2])
render_typst(campaign, recipient_rows(campaign, int(sys.argv[3])), Path(sys.argv[4]))
"""

NAIVE = """
import glob, os, sys, weasyprint
source, target = sys.argv[1], sys.argv[2]
for f in sorted(glob.glob(os.path.join(source, "*.html"))):
    weasyprint.HTML(filename=f).write_pdf(os.path.join(target, os.path.basename(f)[:-5] + ".pdf"))
"""


PERSONAL = ("call on your State", "call on {{ state }}")


def make_campaign(folder: Path, recipients: int, *, personalised: bool = False) -> None:
    for name in ("dispatch.toml", "recipients.csv"):
        shutil.copy(REPO / name, folder / name)
    for name in ("letters", "templates"):
        shutil.copytree(REPO / name, folder / name)
    if personalised:  # the recipient's State in the body: every letter's first page differs
        letter = folder / "letters" / "icc-states-parties-2020.md"
        text = letter.read_text(encoding="utf-8")
        if PERSONAL[0] not in text:
            sys.exit(f"the sample letter no longer says {PERSONAL[0]!r}")
        letter.write_text(text.replace(PERSONAL[0], PERSONAL[1], 1), encoding="utf-8")
    with open(REPO / "recipients.csv", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, list(reader)
    out = rows[:recipients]
    copy = 2
    while len(out) < recipients:
        for row in rows:
            if len(out) == recipients:
                break
            extra = dict(row, id=f"{row['id']}-{copy}")
            if personalised:  # a State of its own, so that no two letters have the same body
                extra["state"] = f"{row['state']} ({copy})"
            out.append(extra)
        copy += 1
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(out)
    (folder / "recipients.csv").write_text(buffer.getvalue(), encoding="utf-8")


def tree_memory(root: int) -> int:
    """Resident memory (bytes) of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class Run:
    """One command in a fresh process: wall time, CPU time of the whole tree, peak tree memory."""

    def __init__(self, args: list[str], cwd: Path, *, watch: Path | None = None) -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.peak = 0
        self.until_file = None
        started = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                self.peak = max(self.peak, tree_memory(process.pid))
                if watch is not None and self.until_file is None and watch.exists():
                    self.until_file = time.perf_counter() - started
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        self.stdout, self.stderr = process.communicate()
        self.wall = time.perf_counter() - started
        done.set()
        sampler.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if process.returncode != 0:
            sys.exit(f"{' '.join(args)} failed ({process.returncode}):\n{self.stderr}")


def same_letters(naive: Path, ours: Path, ids: list[str]) -> tuple[int, list[str]]:
    from pypdf import PdfReader

    pages, differ = 0, []
    for letter_id in ids:
        a, b = PdfReader(str(naive / f"{letter_id}.pdf")), PdfReader(str(ours / f"{letter_id}.pdf"))
        text_a = [p.extract_text() for p in a.pages]
        text_b = [p.extract_text() for p in b.pages]
        if text_a != text_b:
            differ.append(letter_id)
        pages += len(b.pages)
    return pages, differ


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    memory = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    has_hb = "libharfbuzz-subset.so" in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    return (f"nproc {os.cpu_count()}, {model}, {memory / 1024 / 1024:.1f} GiB RAM, Python {platform.python_version()}, "
            f"HarfBuzz-Subset {'yes' if has_hb else 'no (fontTools subsets fonts)'}, load average "
            f"{os.getloadavg()[0]:.2f} at start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=125, help="how many letters (default 125)")
    parser.add_argument("--jobs", type=int, default=None, help="passed to dispatch render --jobs")
    parser.add_argument("--skip-naive", action="store_true", help="do not run the naive loop (it is slow)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary campaign folder")
    parser.add_argument("--typst", action="store_true", help="also time the Typst reference, in a fresh process")
    parser.add_argument("--whole", action="store_true",
                        help="also time `dispatch render --force --no-layers` (every letter rendered whole)")
    parser.add_argument("--personalised", action="store_true",
                        help="the personalised case: the sample with `call on {{ state }}` in the body")
    args = parser.parse_args()

    print(machine())
    print("personalised case: `call on {{ state }}` in the body" if args.personalised else "the sample campaign")
    folder = Path(tempfile.mkdtemp(prefix="dispatch-bench-"))
    try:
        make_campaign(folder, args.recipients, personalised=args.personalised)
        out = folder / "out" / "icc-states-parties-2020"
        html, naive = folder / "html", folder / "naive"
        Run([DISPATCH, "-q", "render", "--format", "html"], folder)
        out.rename(html)
        ids = sorted(p.stem for p in html.glob("*.html"))
        jobs = ["--jobs", str(args.jobs)] if args.jobs else []
        rows = []

        if not args.skip_naive:
            naive.mkdir()
            naive_run = Run([sys.executable, "-c", NAIVE, str(html), str(naive)], folder)
            rows.append(("naive loop (1 process)", naive_run))
        cold = Run([DISPATCH, "-q", "render", *jobs], folder)
        rows.append(("dispatch render, cold", cold))
        from pypdf import PdfReader

        pages = sum(len(PdfReader(str(out / f"{letter_id}.pdf")).pages) for letter_id in ids)
        if not args.skip_naive:
            pages, differ = same_letters(naive, out, ids)
            if differ:
                sys.exit(f"{len(differ)} letters differ from the naive loop's: {', '.join(differ[:10])}")
        if args.whole:
            whole = Run([DISPATCH, "-q", "render", "--force", "--no-layers", *jobs], folder)
            rows.append(("dispatch render --no-layers, cold", whole))
            if not args.skip_naive and same_letters(naive, out, ids)[1]:
                sys.exit("--no-layers letters differ from the naive loop's")
        warm = Run([DISPATCH, "-q", "render", *jobs], folder)
        rows.append(("dispatch render, nothing changed", warm))
        if f"rendered 0, {len(ids)} up to date" not in warm.stdout:
            sys.exit(f"the second render rendered something:\n{warm.stdout}")
        shown = "NA" if "NA" in ids else ids[0]
        (out / f"{shown}.pdf").unlink()
        preview = Run([DISPATCH, "-q", "preview", shown], folder, watch=out / f"{shown}.pdf")
        rows.append((f"dispatch preview {shown} (new process)", preview))

        if args.typst:
            typst_run = Run([sys.executable, "-c", TYPST, str(REPO / "bench"), str(folder), str(args.recipients),
                             str(folder / "typst")], folder)
            rows.append(("Typst reference (1 process)", typst_run))

        print(f"{len(ids)} letters, {pages} pages" + ("" if args.skip_naive else "; same text and pages as the naive loop"))
        print(f"{'':38} {'wall s':>8} {'cpu s':>8} {'peak MB':>8}")
        for name, run in rows:
            print(f"{name:38} {run.wall:8.2f} {run.cpu:8.2f} {run.peak / 1e6:8.0f}")
        print(f"preview: {shown}.pdf on disk after {preview.until_file:.2f} s (PNG images after {preview.wall:.2f} s)")
        print(f"cold render: {pages / cold.wall:.1f} pages/s, {len(ids) / cold.wall:.1f} letters/s")
        print(f"no change: {warm.wall / cold.wall:.1%} of the cold render")
        if not args.skip_naive:
            print(f"ratio cold render / naive loop: {cold.wall / naive_run.wall:.3f} (wall), "
                  f"{cold.cpu / naive_run.cpu:.3f} (cpu)")
        if args.whole and not args.skip_naive:
            print(f"ratio --no-layers / naive loop: {whole.wall / naive_run.wall:.3f} (wall)")
        if args.typst:
            print(f"dispatch cold render / Typst: {cold.wall / typst_run.wall:.2f}x (wall), "
                  f"{cold.cpu / typst_run.cpu:.2f}x (cpu)")
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
