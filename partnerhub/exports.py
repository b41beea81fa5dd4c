"""Documents a resource can also be downloaded as: the media type a client prefers, CSV, and a printable PDF."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CSV = "text/csv"
PDF = "application/pdf"
JSON = "application/json"


def preferred(accept: str | None, offers: Sequence[str]) -> str:
    """The offer the Accept header ranks highest: by q-value, then an exact media type over a wildcard, then the
    order of `offers`; the first offer when nothing matches or there is no header (a client asking only for
    something else still gets the resource, in its default form)."""
    scores: dict[str, tuple[float, int]] = {}
    for part in (accept or "").split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        for offer in offers:
            specificity = 2 if media == offer else 1 if media == offer.split("/")[0] + "/*" else (
                0 if media == "*/*" else -1)
            if specificity >= 0 and q > 0:
                scores[offer] = max(scores.get(offer, (0.0, -1)), (q, specificity))
    if not scores:
        return offers[0]
    return max(offers, key=lambda offer: (*scores.get(offer, (0.0, -1)), -offers.index(offer)))


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """RFC 4180 CSV (CRLF line ends, quoted where needed), UTF-8, a header row first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(["" if value is None else value for value in row] for row in rows)
    return out.getvalue().encode()


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    widths: Sequence[float]  # relative column widths
    right: frozenset[int] = frozenset()  # columns aligned right (amounts)


def pdf_bytes(title: str, facts: Sequence[tuple[str, str]], tables: Sequence[tuple[str, Table]]) -> bytes:
    """A printable A4 document: a title, label/value facts, then titled tables that break across pages with
    their header repeated. Core fonts only (Latin-1): other characters print as '?'."""
    from fpdf import FPDF

    def text(value: str) -> str:
        return value.encode("latin-1", "replace").decode("latin-1")

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 10, text(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    for label, value in facts:
        pdf.set_font("Helvetica", "B", 9)
        pdf.cell(40, 5, text(label))
        pdf.set_font("Helvetica", "", 9)
        pdf.cell(0, 5, text(value), new_x="LMARGIN", new_y="NEXT")
    width = pdf.w - pdf.l_margin - pdf.r_margin
    for heading, table in tables:
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(0, 7, text(heading), new_x="LMARGIN", new_y="NEXT")
        total = sum(table.widths)
        widths = [width * w / total for w in table.widths]

        def header_row(table: Table = table, widths: list[float] = widths) -> None:
            pdf.set_font("Helvetica", "B", 8)
            for i, name in enumerate(table.header):
                pdf.cell(widths[i], 6, text(name), border="B", align="R" if i in table.right else "L")
            pdf.ln()
            pdf.set_font("Helvetica", "", 8)

        header_row()
        if not table.rows:
            pdf.cell(0, 6, "(none)", new_x="LMARGIN", new_y="NEXT")
        for row in table.rows:
            if pdf.get_y() > pdf.h - 20:
                pdf.add_page()
                header_row()
            for i, value in enumerate(row):
                cell = text(value)
                while cell and pdf.get_string_width(cell) > widths[i] - 1:
                    cell = cell[:-2] + "~"  # cut to the column: the CSV and the API keep the whole text
                pdf.cell(widths[i], 5, cell, align="R" if i in table.right else "L")
            pdf.ln()
    return bytes(pdf.output())
