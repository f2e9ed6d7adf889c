"""Sign PDFs (PAdES baseline B-B, with pyHanko) and check the signature of a signed PDF.

The key and its certificate come from a PKCS#12 file (.p12 / .pfx). The password is given by the
caller and kept only in memory, never written anywhere.
"""

from __future__ import annotations

import importlib.util
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from dispatch.errors import SignError
from dispatch.extras import require

log = logging.getLogger(__name__)

FIELD_NAME = "Signature"


def _need_pyhanko(what: str) -> None:
    require("pyhanko", "sign", what, SignError)  # an extra: pip install 'dispatch-letters[sign]'


class Signer:
    """Signs one PDF after another with the same key. Load it with open_signer()."""

    def __init__(self, simple_signer, key_file: Path) -> None:
        self._signer = simple_signer
        self.key_file = key_file

    @property
    def name(self) -> str:
        return describe(self._signer.signing_cert)

    def sign(self, data: bytes, *, reason: str | None = None, location: str | None = None) -> bytes:
        """The PDF with a PAdES B-B signature added as an incremental update (the original bytes stay)."""
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import signers
        from pyhanko.sign.fields import SigSeedSubFilter

        meta = signers.PdfSignatureMetadata(field_name=FIELD_NAME, subfilter=SigSeedSubFilter.PADES,
                                            md_algorithm="sha256", reason=reason, location=location)
        writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
        output = signers.PdfSigner(meta, signer=self._signer).sign_pdf(writer)
        return output.getvalue()


def read_key_file(key_file: Path) -> bytes:
    """The bytes of a PKCS#12 file, read before its password is asked for."""
    _need_pyhanko("signing PDFs (--sign)")  # said before a password is asked for
    try:
        return key_file.read_bytes()
    except FileNotFoundError:
        raise SignError("key file not found", file=str(key_file),
                        hint="pass the PKCS#12 file (.p12 or .pfx) that holds the signing key and certificate") from None
    except OSError as exc:
        raise SignError(f"cannot read the key file: {exc.strerror}", file=str(key_file)) from None


def open_signer(key_file: Path, password: str | None, *, data: bytes | None = None) -> Signer:
    """Load the key and certificate of a PKCS#12 file; a wrong password or file is a SignError."""
    _need_pyhanko("signing PDFs (--sign)")
    from pyhanko.sign import signers

    data = read_key_file(key_file) if data is None else data
    try:
        loaded = signers.SimpleSigner.load_pkcs12_data(
            data, other_certs=[], passphrase=password.encode("utf-8") if password else None)
    except ValueError:
        raise SignError("cannot open the key file: wrong password, or not a PKCS#12 file", file=str(key_file),
                        hint="check the password (DISPATCH_SIGN_PASSWORD) and that the file is a .p12/.pfx") from None
    return Signer(loaded, key_file)


@dataclass(frozen=True)
class SignatureCheck:
    """What the signature of one PDF says."""

    signed: bool
    valid: bool = False  # the signed bytes are unchanged and the signature matches the certificate
    whole_file: bool = False  # nothing was added after signing
    signer: str = ""
    trusted: bool | None = None  # None when no trusted certificate was given
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.signed and self.valid and self.whole_file and self.trusted is not False


def check_signature(data: bytes, *, trust: Iterable[bytes] = ()) -> SignatureCheck:
    """Check the last signature of a PDF. trust: certificates (PEM or DER) the signer must chain to."""
    if importlib.util.find_spec("pyhanko") is None:
        if b"/ByteRange" not in data:  # a signature lies uncompressed in the file: none here
            return SignatureCheck(signed=False, problem="the file is not signed")
        _need_pyhanko("checking a PDF's signature")
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation.errors import SignatureValidationError
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        signatures = reader.embedded_signatures
    except (PdfError, ValueError, KeyError, TypeError) as exc:
        return SignatureCheck(signed=False, problem=f"not a readable PDF ({exc})")
    if not signatures:
        return SignatureCheck(signed=False, problem="the file is not signed")
    roots = list(_certificates(trust))
    context = _validation_context(roots)
    try:
        status = validate_pdf_signature(signatures[-1], context)
    except (SignatureValidationError, PdfError, ValueError, KeyError, TypeError) as exc:
        return SignatureCheck(signed=True, problem=f"the signature cannot be checked ({exc})")
    whole = status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    valid = bool(status.intact and status.valid)
    problem = ""
    if not valid:
        problem = "the signature does not match the file: it was changed after signing"
    elif not whole:
        problem = "something was added to the file after it was signed"
    elif roots and not status.trusted:
        problem = "the signer's certificate does not chain to a trusted certificate"
    return SignatureCheck(signed=True, valid=valid, whole_file=whole,
                          signer=describe(status.signing_cert),
                          trusted=bool(status.trusted) if roots else None, problem=problem)


def describe(certificate) -> str:
    """Who a certificate names: "Common Name (Organisation)"."""
    subject = certificate.subject.native
    name, organisation = subject.get("common_name"), subject.get("organization_name")
    if not name:
        return certificate.subject.human_friendly
    return f"{name} ({organisation})" if organisation and organisation != name else name


def _certificates(blobs: Iterable[bytes]):
    from asn1crypto import pem, x509

    for blob in blobs:
        if pem.detect(blob):
            for _, _, der in pem.unarmor(blob, multiple=True):
                yield x509.Certificate.load(der)
        else:
            yield x509.Certificate.load(blob)


def _validation_context(roots: list):
    from pyhanko_certvalidator import ValidationContext

    # Only the certificates given are trusted (none: the signer is shown, not vouched for). Nothing is
    # fetched from the network; B-B signatures carry no revocation data to check offline.
    return ValidationContext(trust_roots=roots, allow_fetching=False)
