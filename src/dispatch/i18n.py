"""What a letter says in its own language: the salutation, the "Page N of M" label, the date, the direction,
the quotation marks, a state's name in a sentence, and the forms of address.

One entry per language. A translation may override the salutation and the page label in its front
matter (for a language that has no entry here), and a recipient's `salutation` cell overrides both.
The salutation otherwise follows the addressee's form of address (FORMS: a head of mission, an observer,
an ambassador, a chargé d'affaires, a minister, an official), in English, French and Spanish.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Mapping

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


# --- Typography: quotation marks and apostrophes as the language prints them ------------------------------

# (open, close, inner open, inner close). French and Spanish guillemets take a no-break space inside.
QUOTES: dict[str, tuple[str, str, str, str]] = {
    "en": ("“", "”", "‘", "’"),
    "fr": ("«\u00a0", "\u00a0»", "“", "”"),
    "es": ("«", "»", "“", "”"),
    "pt": ("«", "»", "“", "”"),
    "it": ("«", "»", "“", "”"),
    "de": ("„", "“", "‚", "‘"),
    "ru": ("«", "»", "„", "“"),
    "ar": ("«", "»", "“", "”"),
    "zh": ("“", "”", "‘", "’"),
}
_OPENING = set(" \t\n([{/\u2014\u2013-")


def quotes(language: str) -> tuple[str, str, str, str]:
    return QUOTES.get(language.split("-")[0], QUOTES["en"])


def typographic(text: str, language: str = "en") -> str:
    """Straight quotes and apostrophes as printed: Côte d'Ivoire -> Côte d’Ivoire, "x" -> “x” (« x » in French).

    A ' between letters, or closing where no quotation was opened, is an apostrophe (States’, ’90s).
    """
    if "'" not in text and '"' not in text:
        return text
    open_, close, inner_open, inner_close = quotes(language)
    out: list[str] = []
    inner = outer = False
    for i, ch in enumerate(text):
        before = text[i - 1] if i else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        if ch == "'":
            if before.isalnum() and after.isalnum() or (before in _OPENING and text[i + 1:i + 3].isdigit()):
                out.append("’")
            elif before in _OPENING and not after.isspace():
                out.append(inner_open)
                inner = True
            else:
                out.append(inner_close if inner else "’")
                inner = False
        elif ch == '"':
            opening = before in _OPENING and not after.isspace() or not outer and before in _OPENING
            out.append(open_ if opening else close)
            outer = opening
        else:
            out.append(ch)
    return "".join(out)


# --- States in running text ----------------------------------------------------------------------------------

# UN English (UNTERM's short names) writes these names with "the" in a sentence ("the Gambia", "the
# Netherlands"); so does any name that starts with a word of a formal name ("the Republic of Korea") or ends
# like a union ("the Cook Islands", "the Czech Republic").
_ARTICLE_NAMES = {"Bahamas", "Comoros", "Congo", "Gambia", "Holy See", "Netherlands", "Niger", "Philippines", "Sudan"}
_NO_ARTICLE = {"Solomon Islands"}  # UNTERM: "Solomon Islands", "Maldives", "Seychelles" take none
_FORMAL_FIRST = {"Arab", "Bolivarian", "Commonwealth", "Co-operative", "Democratic", "Federal", "Federated",
                 "Grand", "Hashemite", "Independent", "Islamic", "Kingdom", "People’s", "Plurinational",
                 "Principality", "Republic", "Socialist", "State", "Sultanate", "Union", "United"}
_FORMAL_LAST = {"Emirates", "Federation", "Islands", "Kingdom", "Republic"}
_INVERTED = re.compile(r"^(?P<name>[^()]+?)\s*\((?P<formal>[^()]+)\)$")  # Bolivia (Plurinational State of)
_ISO_INVERTED = re.compile(r"^(?P<name>[^,]+),\s*(?P<formal>.+\b(?:of|of the))$", re.I)  # Korea, Republic of


def state_in_sentence(state: str, language: str = "en") -> str:
    """A state's name as it reads inside an English sentence: the Gambia, the Plurinational State of Bolivia.

    UN names put the formal part in brackets ("Venezuela (Bolivarian Republic of)"), ISO names after a comma
    ("Korea, Republic of"); both are turned round. Other languages: the name as written (give the phrase in the
    `state_in_sentence` column: "la Namibie", "el Níger").
    """
    name = " ".join(typographic(state, language).split())
    if not language.startswith("en") or not name:
        return name
    inverted = _INVERTED.match(name) or _ISO_INVERTED.match(name)
    if inverted:
        name = f"{inverted.group('formal')} {inverted.group('name')}"
    if name[:4].lower() == "the ":
        return "the " + name[4:]
    words = name.split()
    if name not in _NO_ARTICLE and (name in _ARTICLE_NAMES or words[0] in _FORMAL_FIRST or words[-1] in _FORMAL_LAST):
        return "the " + name
    return name


def of_state(name: str, language: str = "en") -> str:
    """'of' and the state's name in running text: of the Gambia; de la France, du Niger, d’Haïti; del Níger."""
    if not name:
        return ""
    if language.startswith("fr"):
        lower = name.lower()
        for article, contracted in (("le ", "du "), ("les ", "des ")):
            if lower.startswith(article):
                return contracted + name[len(article):]
        if lower.startswith(("la ", "l’", "l'")):
            return "de " + name
        return ("d’" if lower[:1] in "aeiouyhâéèêîôû" else "de ") + name
    if language.startswith("es"):
        return ("del " + name[3:]) if name.lower().startswith("el ") else "de " + name
    return "of " + name


# --- Forms of address --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Form:
    """How one kind of addressee is addressed in one language.

    honorific: before a name ("H.E."); salutation: the letter's first line ({office}: the addressee's office,
    from an `addressee` such as "The Secretary of Foreign Affairs"); function: the line after the name, or
    after `article` when there is no name ({of}: "of Namibia", "de la Namibie"; left out when unknown).
    """

    honorific: str
    salutation: str
    function: str
    article: str


FORM_NAMES = ("representative", "observer", "ambassador", "charge", "minister", "official")
FORMS: dict[str, dict[str, Form]] = {
    "en": {
        "representative": Form("H.E.", "Your Excellency,", "Permanent Representative {of}", "The "),
        "observer": Form("H.E.", "Your Excellency,", "Permanent Observer {of}", "The "),
        "ambassador": Form("H.E.", "Your Excellency,", "Ambassador {of}", "The "),
        "charge": Form("", "Dear Chargé d’affaires,", "Chargé d’affaires a.i.", "The "),
        "minister": Form("H.E.", "Your Excellency,", "Minister for Foreign Affairs {of}", "The "),
        "official": Form("", "Dear {office},", "", "The "),
    },
    "fr": {
        "representative": Form("S.E.", "Excellence,", "Représentant permanent {of}", "Le "),
        "observer": Form("S.E.", "Excellence,", "Observateur permanent {of}", "L’"),
        "ambassador": Form("S.E.", "Excellence,", "Ambassadeur {of}", "L’"),
        "charge": Form("", "Madame, Monsieur,", "Chargé d’affaires a.i.", "Le "),
        "minister": Form("S.E.", "Excellence,", "Ministre des Affaires étrangères {of}", "Le "),
        "official": Form("", "Madame, Monsieur,", "", "Le "),
    },
    "es": {
        "representative": Form("S.E.", "Excelencia:", "Representante Permanente {of}", "El "),
        "observer": Form("S.E.", "Excelencia:", "Observador Permanente {of}", "El "),
        "ambassador": Form("S.E.", "Excelencia:", "Embajador {of}", "El "),
        "charge": Form("", "Distinguido/a señor/a:", "Encargado de Negocios a.i.", "El "),
        "minister": Form("S.E.", "Excelencia:", "Ministro de Relaciones Exteriores {of}", "El "),
        "official": Form("", "Distinguido/a señor/a:", "", "El "),
    },
}
GENERIC_SALUTATION = {"en": "Dear Sir or Madam,", "fr": "Madame, Monsieur,", "es": "Distinguido/a señor/a:"}
_MISSION = re.compile(r"^Permanent (Observer )?Mission of (.+?) to the United Nations\b")
_HONORIFIC = re.compile(r"^(H\.\s?E\.|S\.\s?E\.|His |Her |Son |Sa |Su )", re.I)
_OFFICE = re.compile(r"^The ((?:[A-Z][\w’'-]*)(?: [A-Z][\w’'-]*){0,2})(?=$|,| of | for | to | and | at )")


def form_name(fields: Mapping[str, str]) -> str:
    """The recipient's form of address: its `form` cell, else the head of its mission (observer or not)."""
    named = re.sub(r"[\s'’-]+", "_", (fields.get("form") or "").strip().lower()).replace("chargé", "charge")
    aliases = {"head_of_mission": "representative", "permanent_representative": "representative",
               "permanent_observer": "observer", "charge_d_affaires": "charge", "charge_daffaires": "charge"}
    named = aliases.get(named, named)
    if named:
        if named not in FORM_NAMES:
            raise ValueError(f"unknown form of address {fields.get('form')!r}")
        return named
    mission = _MISSION.match((fields.get("mission") or "").strip())
    return "observer" if mission and mission.group(1) else "representative"


def address_form(fields: Mapping[str, str], language: str) -> Form | None:
    """The form of address for a recipient in a language; None for a language without a table (then the
    letter's own salutation and English address lines are used)."""
    table = FORMS.get(language.split("-")[0])
    return table[form_name(fields)] if table else None


def salutation(fields: Mapping[str, str], language: str) -> str | None:
    """The salutation the recipient's form of address gives in the language (None: no table for it)."""
    form = address_form(fields, language)
    if form is None:
        return None
    if "{office}" not in form.salutation:
        return form.salutation
    first = next((line.strip() for line in (fields.get("addressee") or "").splitlines() if line.strip()), "")
    office = _OFFICE.match(first)
    return form.salutation.format(office=office.group(1)) if office else GENERIC_SALUTATION[language.split("-")[0]]


def addressee_lines(fields: Mapping[str, str], language: str) -> tuple[str, ...]:
    """Who the letter is addressed to, above the mission's name.

    An `addressee` cell wins. Otherwise the form's function, after the name ("H.E. Ms. X" / "Permanent
    Representative of Namibia") or after the article ("The Permanent Representative of Namibia"). In English
    the state is written as in the mission's name ("of the Niger"), else as in running text.
    """
    addressee = fields.get("addressee") or ""
    if addressee.strip():
        return tuple(line.strip() for line in addressee.splitlines() if line.strip())
    form = address_form(fields, language)
    table = FORMS["en"] if form is None else None
    form = form or table[form_name(fields)]
    english = table is not None or language.startswith("en")
    mission = _MISSION.match((fields.get("mission") or "").strip())
    in_sentence = (fields.get("state_in_sentence") or "").strip()
    if english:
        of = "of " + (in_sentence or (mission.group(2) if mission else state_in_sentence(fields.get("state") or "")))
    else:
        of = of_state(in_sentence, language)  # no reliable name in this language without the column
    function = " ".join(form.function.format(of=of).split())
    title, name = (fields.get("title") or "").strip(), (fields.get("ambassador") or "").strip()
    if name:
        honorific = form.honorific if table is None and not _HONORIFIC.match(title) else ""
        return tuple(part for part in (" ".join(p for p in (honorific, title, name) if p), function) if part)
    return (form.article + function,) if function else ()
