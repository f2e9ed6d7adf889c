"""What archival output and signing cost: render the sample letter as a plain PDF, as PDF/A-3u (tagged),
and as PDF/A-3u signed (PAdES B-B), for the same recipients; print seconds per letter and sizes.

    .venv/bin/python bench/pdf_variant.py --recipients 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from dispatch import campaign
from dispatch.pdf.engine import PdfRenderer
from dispatch.pdf.signing import open_signer
from dispatch.workspace import open_workspace

REPO = Path(__file__).resolve().parent.parent


def throwaway_key(folder: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Benchmark")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    path = folder / "key.p12"
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"k", key, cert, None, serialization.NoEncryption()))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10)
    args = parser.parse_args()
    ws = open_workspace(REPO)
    loaded = campaign.load(ws)
    merger = campaign.merger(loaded)
    rows = loaded.recipients.rows[:args.recipients]
    htmls = [merger.html(r) for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        signer = open_signer(throwaway_key(Path(tmp)), None)
        print(f"{platform.node()} {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
              f"{len(htmls)} letters of the sample campaign")
        for label, variant, sign in (("plain PDF", None, False), ("pdf/a-3u + tags", "pdf/a-3u", False),
                                     ("pdf/a-3u + tags + signature", "pdf/a-3u", True)):
            renderer = PdfRenderer(ws.templates, pdf_variant=variant)
            renderer.render(htmls[0])  # warm the font cache
            times, sizes = [], []
            for html in htmls:
                start = time.perf_counter()
                data = renderer.render(html).data
                if sign:
                    data = signer.sign(data)
                times.append(time.perf_counter() - start)
                sizes.append(len(data))
            print(f"{label:30s} {statistics.mean(times):6.3f} s/letter (median {statistics.median(times):.3f}), "
                  f"{statistics.mean(sizes) / 1024:6.1f} KiB")


if __name__ == "__main__":
    main()
