"""Hostile and broken PDFs for the extraction stage, and worker functions that misbehave.

`special_cases()` names one PDF per failure preflight must recognise, with the error it must raise.
`mutated_pdfs(seed)` derives a deterministic mix of those and of randomly damaged valid PDFs
(truncated, bit-flipped, overwritten, xref destroyed, numbers made huge), for fuzzing the
isolated extraction path. The module-level functions at the end run inside isolated workers, so
they must stay importable by name.
"""

from __future__ import annotations

import io
import os
import random
import re
import signal
import struct
import time
import zlib
from functools import cache
from typing import Any

from ldrt_core.errors import (
    CorruptPDFError,
    EmptyPDFError,
    EncryptedPDFError,
    ExtractionError,
    ImageBombError,
    ImageOnlyPDFError,
    PageSizeError,
    TooManyPagesError,
)
from ldrt_core.extract.preflight import preflight
from ldrt_core.extract.records import ExtractOptions

TEXT = b"BT /F1 12 Tf 72 720 Td (Figure 1. Dose response of macrophages.) Tj ET"
FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def assemble(objects: list[bytes]) -> bytes:
    """A PDF whose object n is objects[n-1] (object 1 is the catalog), with a correct xref."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def minimal_pdf(text: str) -> bytes:
    """A small, valid one-page PDF showing `text` (unique text gives unique bytes)."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = zlib.compress(f"BT /F1 12 Tf 72 720 Td ({safe}) Tj ET".encode("latin-1", "replace"))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return assemble(objects)


def assemble_compact(objects: list[bytes]) -> bytes:
    """Like `assemble`, but the objects that are not streams go into one compressed object
    stream, indexed by a compressed xref stream (PDF 1.5): thousands of pages in a few KB."""
    packed = [n for n, body in enumerate(objects, 1) if not body.endswith(b"endstream")]
    slots = {n: i for i, n in enumerate(packed)}
    object_stream, xref_stream = len(objects) + 1, len(objects) + 2
    head, packed_bodies = bytearray(), bytearray()
    for n in packed:
        head += b"%d %d " % (n, len(packed_bodies))
        packed_bodies += objects[n - 1] + b"\n"
    dictionary = b" /Type /ObjStm /N %d /First %d" % (len(packed), len(head))
    objects = [*objects, stream(bytes(head + packed_bodies), dictionary)]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    rows = [struct.pack(">BIH", 0, 0, 65535)]
    for number, body in enumerate(objects, 1):
        if number in slots:
            rows.append(struct.pack(">BIH", 2, object_stream, slots[number]))
        else:
            rows.append(struct.pack(">BIH", 1, len(out), 0))
            out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    rows.append(struct.pack(">BIH", 1, len(out), 0))
    xref = stream(
        b"".join(rows), b" /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R" % (xref_stream + 1)
    )
    start = len(out)
    out += b"%d 0 obj\n" % xref_stream + xref + b"\nendobj\nstartxref\n%d\n%%%%EOF\n" % start
    return bytes(out)


def stream(data: bytes, extra: bytes = b"", compress: bool = True) -> bytes:
    if compress:
        data = zlib.compress(data)
        extra += b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def one_page(content: bytes, xobjects: bytes = b"", media_box: bytes = b"[0 0 612 792]") -> bytes:
    """One page drawing `content` (with font /F1 and the XObjects named in `xobjects`)."""
    return assemble(_one_page_objects(content, xobjects, media_box))


def _one_page_objects(content: bytes, xobjects: bytes, media_box: bytes) -> list[bytes]:
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox " + media_box + b" /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << " + xobjects + b" >> >> >>",
        stream(content),
        FONT,
    ]


def empty_pdf() -> bytes:
    return assemble([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])


def many_pages_pdf(pages: int = 5000) -> bytes:
    """`pages` tiny pages sharing one content stream and one resource dictionary."""
    first_page = 5
    kids = b" ".join(b"%d 0 R" % (first_page + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d /MediaBox [0 0 200 200] "
        b"/Resources << /Font << /F1 4 0 R >> >> >>" % (kids, pages),
        stream(b"BT /F1 12 Tf 20 100 Td (p) Tj ET"),
        FONT,
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /Contents 3 0 R >>"] * pages
    return assemble_compact(objects)


def huge_page_pdf(width: int = 100_000) -> bytes:
    return one_page(TEXT, media_box=b"[0 0 %d 792]" % width)


def zero_area_page_pdf() -> bytes:
    return one_page(TEXT, media_box=b"[0 0 612 0.5]")


def nested_forms_pdf(depth: int = 2000, leaf: bytes | None = None) -> bytes:
    """Form XObject 6 draws form 7, which draws form 8, ... `depth` levels; the innermost draws
    `leaf` (an image XObject dictionary+stream) if given. The page itself has text."""
    first = 6
    objects = _one_page_objects(TEXT + b" q /X0 Do Q", b"/X0 %d 0 R" % first, b"[0 0 612 792]")
    for level in range(depth):
        child = first + level + 1
        objects.append(
            stream(
                b"q /X0 Do Q",
                b" /Type /XObject /Subtype /Form /BBox [0 0 612 792]"
                b" /Resources << /XObject << /X0 %d 0 R >> >>" % child,
            )
        )
    objects.append(leaf if leaf is not None else stream(b"", b" /Type /XObject /Subtype /Form"))
    return assemble(objects)


def bomb_image(side: int = 100_000) -> bytes:
    """An image XObject that declares side x side 8-bit grey pixels in a few bytes of Flate."""
    return stream(
        b"\0" * 1024,
        b" /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray"
        b" /BitsPerComponent 8" % (side, side),
    )


def image_bomb_pdf(side: int = 100_000) -> bytes:
    objects = _one_page_objects(
        TEXT + b" q 100 0 0 100 72 500 cm /Im0 Do Q", b"/Im0 6 0 R", b"[0 0 612 792]"
    )
    objects.append(bomb_image(side))
    return assemble(objects)


def scan_pdf() -> bytes:
    """A page that is one grey image and nothing else: what a scanner produces."""
    pixels = bytes((x * 7 + y * 3) % 256 for y in range(64) for x in range(48))
    objects = _one_page_objects(
        b"q 540 0 0 720 36 36 cm /Im0 Do Q", b"/Im0 6 0 R", b"[0 0 612 792]"
    )
    objects.append(
        stream(
            pixels,
            b" /Type /XObject /Subtype /Image /Width 48 /Height 64 /ColorSpace /DeviceGray"
            b" /BitsPerComponent 8",
        )
    )
    return assemble(objects)


@cache
def rich_pdf() -> bytes:
    """Three reportlab pages with text, an embedded image, vector lines and a form XObject."""
    from PIL import Image
    from reportlab.lib.utils import ImageReader  # type: ignore[import-untyped]
    from reportlab.pdfgen import canvas  # type: ignore[import-untyped]

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=(612, 792), invariant=1)
    image = Image.frombytes("RGB", (64, 48), bytes((i * 37) % 256 for i in range(64 * 48 * 3)))
    for page in (1, 2):
        pdf.setFont("Helvetica", 11)
        pdf.drawString(72, 740, f"Low-dose radiation therapy, page {page}")
        pdf.drawImage(ImageReader(image), 72, 420, width=300, height=225)
        for i in range(12):
            pdf.line(72, 400 - i * 8, 372, 400 - i * 12)
        pdf.drawString(72, 300, f"Figure {page}. Cytokine levels after 0.5 Gy.")
        pdf.showPage()
    pdf.beginForm("legend")
    pdf.drawString(0, 0, "legend")
    pdf.endForm()
    pdf.doForm("legend")
    pdf.drawString(72, 700, "Page 3 holds a form XObject.")
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


@cache
def encrypted_pdf() -> bytes:
    from reportlab.lib.pdfencrypt import StandardEncryption  # type: ignore[import-untyped]
    from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped]

    buffer = io.BytesIO()
    encryption = StandardEncryption(userPassword="x", ownerPassword="y")
    pdf = Canvas(buffer, pagesize=(612, 792), invariant=1, encrypt=encryption)
    pdf.drawString(72, 720, "Secret dose table")
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


HTML = b"<!DOCTYPE html><html><head><title>Access denied</title></head><body>Log in</body></html>"


def special_cases() -> list[tuple[str, bytes, type[ExtractionError] | None]]:
    """(name, PDF, the error preflight must raise, or None where it must return a page count)."""
    return [
        ("minimal", minimal_pdf("Figure 1. A valid page."), None),
        ("rich", rich_pdf(), None),
        ("nested-forms-2000", nested_forms_pdf(2000), None),
        ("encrypted", encrypted_pdf(), EncryptedPDFError),
        ("zero-pages", empty_pdf(), EmptyPDFError),
        ("5000-pages", many_pages_pdf(5000), TooManyPagesError),
        ("page-100000pt-wide", huge_page_pdf(100_000), PageSizeError),
        ("page-without-height", zero_area_page_pdf(), PageSizeError),
        ("image-bomb", image_bomb_pdf(100_000), ImageBombError),
        ("image-bomb-in-form", nested_forms_pdf(5, leaf=bomb_image(100_000)), ImageBombError),
        ("scan", scan_pdf(), ImageOnlyPDFError),
        ("html", HTML, CorruptPDFError),
        ("garbage", random.Random(7).randbytes(4096), CorruptPDFError),
        ("empty-file", b"", CorruptPDFError),
        ("truncated-header", minimal_pdf("x")[:40], CorruptPDFError),
    ]


def _truncate(rng: random.Random, pdf: bytes) -> tuple[str, bytes]:
    at = rng.randrange(len(pdf))
    return f"truncate@{at}", pdf[:at]


def _flip_bits(rng: random.Random, pdf: bytes) -> tuple[str, bytes]:
    out = bytearray(pdf)
    flips = rng.choice((1, 2, 8, 64))
    for _ in range(flips):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return f"flip@{flips}", bytes(out)


def _overwrite(rng: random.Random, pdf: bytes) -> tuple[str, bytes]:
    start = rng.randrange(len(pdf))
    length = rng.choice((1, 16, 256, 4096))
    fill = rng.choice((b"\0", b"\xff", b" ", None))
    data = rng.randbytes(length) if fill is None else fill * length
    out = pdf[:start] + data + pdf[start + length :]
    return f"overwrite@{start}+{length}", out[: max(len(pdf), start + length)]


def _destroy_xref(rng: random.Random, pdf: bytes) -> tuple[str, bytes]:
    at = pdf.rfind(b"xref")
    junk = rng.choice((b"", b"garbage", rng.randbytes(64)))
    return "xref-destroyed", pdf[:at] + junk + pdf[at + 4 :].replace(b"startxref", b"startjunk")


def _huge_number(rng: random.Random, pdf: bytes) -> tuple[str, bytes]:
    numbers = list(re.finditer(rb"(?<=[ /\[])\d+(?=[ \]\n>/])", pdf))
    if not numbers:
        return _flip_bits(rng, pdf)
    match = rng.choice(numbers)
    value = rng.choice(
        (b"0", b"-1", b"999999999", b"2147483648", b"1e308", b"99999999999999999999")
    )
    return f"number@{match.start()}", pdf[: match.start()] + value + pdf[match.end() :]


def _cut_range(rng: random.Random, pdf: bytes) -> tuple[str, bytes]:
    start = rng.randrange(len(pdf))
    length = rng.randrange(1, 512)
    return f"cut@{start}+{length}", pdf[:start] + pdf[start + length :]


MUTATIONS = (_truncate, _flip_bits, _overwrite, _destroy_xref, _huge_number, _cut_range)


def mutated_pdfs(seed: int = 0, count: int = 200) -> list[tuple[str, bytes]]:
    """`count` (name, bytes) cases: the special cases first, then random damage to valid PDFs.
    The same seed gives the same bytes."""
    rng = random.Random(seed)
    cases = [(f"special-{name}", pdf) for name, pdf, _ in special_cases()][:count]
    bases = {"minimal": minimal_pdf("Figure 2. Seeded text."), "rich": rich_pdf()}
    while len(cases) < count:
        base = rng.choice(sorted(bases))
        mutation = rng.choice(MUTATIONS)
        name, pdf = mutation(rng, bases[base])
        cases.append((f"{len(cases):03d}-{base}-{name}", pdf))
    return cases


# Functions run inside isolated workers (module level so they pickle by name).


def preflight_then_parse(pdf: bytes, options: ExtractOptions) -> dict[str, int]:
    """Preflight, then read every page's text and walk its objects: what extraction will do."""
    import pypdfium2 as pdfium  # type: ignore[import-untyped]

    pages = preflight(pdf, options)
    chars = objects = 0
    document = pdfium.PdfDocument(pdf)
    try:
        for index in range(len(document)):
            page = document[index]
            textpage = page.get_textpage()
            chars += len(textpage.get_text_range())
            objects += sum(1 for _ in page.get_objects(max_depth=64))
            textpage.close()
            page.close()
    finally:
        document.close()
    return {"pages": pages, "chars": chars, "objects": objects}


def sleep_forever(pdf: bytes, options: ExtractOptions) -> None:
    while True:
        time.sleep(3600)


def allocate_2gb(pdf: bytes, options: ExtractOptions) -> int:
    block = bytearray(2 * 1024**3)
    return len(block)


def sigkill_self(pdf: bytes, options: ExtractOptions) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def segfault(pdf: bytes, options: ExtractOptions) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(10)


def exit_quietly(pdf: bytes, options: ExtractOptions) -> None:
    os._exit(3)


def raise_image_bomb(pdf: bytes, options: ExtractOptions) -> None:
    raise ImageBombError(f"an image declares too many pixels ({len(pdf)} bytes)")


def raise_value_error(pdf: bytes, options: ExtractOptions) -> None:
    raise ValueError("not a number")


def unpicklable_result(pdf: bytes, options: ExtractOptions) -> Any:
    return lambda: None


def worker_pid(pdf: bytes, options: ExtractOptions) -> int:
    return os.getpid()


def page_count(pdf: bytes, options: ExtractOptions) -> int:
    return preflight(pdf, options)
