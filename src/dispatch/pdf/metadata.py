"""A letter's PDF metadata: read from its HTML <head> as WeasyPrint reads it, written as WeasyPrint writes it.

A layered letter is its group's master plus an update (overlay.py); the update carries the letter's own
/Info dictionary and XMP packet, made here without laying out the letter, byte for byte what WeasyPrint
writes for the same <head> when it renders the letter whole.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any


def info_dictionary(metadata, producer: bytes) -> bytes:
    """The /Info dictionary WeasyPrint writes for this metadata (weasyprint.pdf.generate_pdf)."""
    import pikepdf

    entries = [(b"/Producer", producer)] if producer else []
    standard = {b"/Title": metadata.title, b"/Author": ", ".join(metadata.authors),
                b"/Subject": metadata.description, b"/Keywords": ", ".join(metadata.keywords),
                b"/Creator": metadata.generator}
    entries += [(key, pikepdf.String(value).unparse()) for key, value in standard.items() if value]
    for key, value in metadata.custom.items():
        key = "".join(char for char in key if char.isalnum()).encode("ascii", errors="ignore").decode()
        if key:
            entries.append((pikepdf.Name(f"/{key}").unparse(), pikepdf.String(value).unparse()))
    return b"<<" + b"".join(k + b" " + v for k, v in dict(entries).items()) + b">>"


def xmp_packet(metadata, version: int, conformance: str) -> bytes:
    """The XMP metadata stream of a PDF/A file (weasyprint.pdf.metadata.DocumentMetadata.include_in_pdf)."""
    header = b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    footer = b'</x:xmpmeta>\n<?xpacket end="r"?>'
    xml = metadata.generate_rdf_metadata("a", version, conformance)
    return b"\n".join((header, xml, *metadata.xmp_metadata, footer))


class _HeadReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: str | None = None
        self.metas: list[dict[str, str]] = []
        self._in_title = False
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "meta":
            self.metas.append({k: v or "" for k, v in attrs})
        elif tag == "title" and self.title is None:
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "title" and self._in_title:
            self._in_title, self.title = False, "".join(self._text)

    def handle_data(self, data):
        if self._in_title:
            self._text.append(data)


def head_metadata(head: str):
    """The PDF metadata of an HTML <head>, read as WeasyPrint reads it (weasyprint.html.get_html_metadata):
    <title>, and <meta> author, description, keywords, generator, dcterms dates and the others as custom."""
    from weasyprint.html import parse_w3c_date
    from weasyprint.pdf.metadata import DocumentMetadata

    reader = _HeadReader()
    reader.feed(head)
    values: dict[str, Any] = {"title": reader.title, "authors": [], "keywords": [], "custom": {}}
    whitespace = " \t\n\f\r"
    for meta in reader.metas:
        name, content = meta.get("name", "").lower(), meta.get("content", "")
        if name == "keywords":
            for keyword in content.split(","):
                keyword = keyword.strip(whitespace)
                if keyword not in values["keywords"]:
                    values["keywords"].append(keyword)
        elif name == "author":
            values["authors"].append(content)
        elif name in ("description", "generator"):
            values.setdefault(name, content)
        elif name in ("dcterms.created", "dcterms.modified"):
            values.setdefault(name.split(".")[1], parse_w3c_date(name, content))
        elif name and name not in values["custom"]:
            values["custom"][name] = content
    return DocumentMetadata(**values)
