"""What a letter says in its own language: the salutation, the "Page N of M" label, the date, the direction.

One entry per language. A translation may override the salutation and the page label in its front
matter (for a language that has no entry here), and a recipient's `salutation` cell overrides both.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass

from babel import Locale, UnknownLocaleError
from babel.dates import format_date


@dataclass(frozen=True)
class Wording:
    salutation: str
    page_label: str  # with the placeholders {page} and {pages}
    date_locale: str
    comma: str = ", "  # between the place and the date


WORDING: dict[str, Wording] = {
    "en": Wording("Your Excellency,", "Page {page} of {pages}", "en_GB"),
    "fr": Wording("Excellence,", "Page {page} sur {pages}", "fr"),
    "es": Wording("Excelencia:", "Página {page} de {pages}", "es"),
    "ar": Wording("صاحب السعادة،", "صفحة {page} من {pages}", "ar", comma="، "),
    "ru": Wording("Ваше Превосходительство!", "Страница {page} из {pages}", "ru"),
    "zh": Wording("尊敬的阁下：", "第 {page} 页，共 {pages} 页", "zh", comma="，"),
}
PAGE_PLACEHOLDERS = ("{page}", "{pages}")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
_CSS_PLAIN = re.compile(r"[\w ,.:;()/\u2013\u2014-]", re.UNICODE)


def has_wording(language: str) -> bool:
    return language in WORDING


def wording(language: str, *, salutation: str = "", page_label: str = "") -> Wording:
    """The words for a language; the overrides win, and English fills what a language does not have."""
    base = WORDING.get(language, WORDING["en"])
    return Wording(salutation or base.salutation, page_label or base.page_label,
                   base.date_locale if language in WORDING else language, base.comma)


def page_label_problem(label: str) -> str | None:
    """Why a page label cannot be used, or None when it can."""
    names = _PLACEHOLDER.findall(label)
    if sorted(names) != sorted(PAGE_PLACEHOLDERS):
        return f"the page label must contain {{page}} and {{pages}} once each, not {label!r}"
    return None


def page_label_css(label: str) -> str:
    """A CSS `content` value for a page label: "Page {page} of {pages}" -> "Page " counter(page) ...

    Every character that is not a letter, a digit or plain punctuation is written as a CSS escape, so
    the value is safe inside a <style> element whatever the label contains.
    """
    parts = []
    for piece in re.split(r"(\{pages?\})", label):
        if piece in PAGE_PLACEHOLDERS:
            parts.append(f"counter({piece[1:-1]})")
        elif piece:
            escaped = "".join(ch if _CSS_PLAIN.fullmatch(ch) else f"\\{ord(ch):06x}" for ch in piece)
            parts.append(f'"{escaped}"')
    return " ".join(parts) or '""'


@functools.lru_cache(maxsize=256)
def format_letter_date(value: dt.date | str, language: str) -> str:
    """A date written out in the language: 28 April 2020, 28 avril 2020, 28 de abril de 2020, ..."""
    if not isinstance(value, dt.date):
        return str(value)
    locale = WORDING[language].date_locale if language in WORDING else language
    try:
        return format_date(value, format="long", locale=locale)
    except (UnknownLocaleError, ValueError):
        return format_date(value, format="long", locale=WORDING["en"].date_locale)


def direction(language: str) -> str:
    """'rtl' for languages written right to left (Arabic, Hebrew, Persian, Urdu, ...), else 'ltr'."""
    try:
        order = Locale.parse(language).character_order
    except (UnknownLocaleError, ValueError):
        return "ltr"
    return "rtl" if order == "right-to-left" else "ltr"


def language_name(language: str) -> str:
    try:
        return Locale.parse(language).english_name or language
    except (UnknownLocaleError, ValueError):
        return language
