"""Read a letter: YAML front matter between '---' lines, then a Markdown body (may use Jinja2).

A letter may have translations beside it, letters/<name>.<language>.md (letters/appeal.fr.md). A
translation's front matter may leave out what it shares with the letter (date, signatories, ...).
Each recipient gets the version in its language, or the letter itself when there is none.

What follows the last dot is a language only when it is a language code Babel knows (fr, ar, zh,
pt-BR): letters/appeal.v2.md is a letter of its own, named appeal.v2, with its own folder in out/ and
its own entries in the journal. A version recipients cannot be given (pt-BR, fil: the language column
holds two-letter codes) is an error rather than a letter nobody receives.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import yaml
from babel import localedata

from dispatch.errors import LetterError
from dispatch.i18n import page_label_problem
from dispatch.models import Letter

FIELDS = ("title", "subject", "place", "date", "template", "senders", "signatories", "language",
          "salutation", "page_label")
REQUIRED = ("subject", "date")
DEFAULT_TEMPLATE = "letter.html.j2"
LANGUAGE_CODE = re.compile(r"^[a-z]{2}$")
# A language tag as file names write it: fr, fil, pt-BR, zh-Hant, es-419 (Babel decides whether it is one).
_LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(?:[-_][A-Z][a-z]{3})?(?:[-_](?:[A-Z]{2}|[0-9]{3}))?$")


def language_version(stem: str) -> tuple[str, str] | None:
    """('appeal', 'fr') for 'appeal.fr', a language version of the letter appeal; None for a letter's own
    name ('appeal', 'appeal.v2', 'report.final'): what follows the last dot must be a language Babel knows."""
    base, dot, code = stem.rpartition(".")
    if not dot or not base or not _LANGUAGE_TAG.match(code):
        return None
    return (base, code) if localedata.exists(code.replace("-", "_")) else None


def letter_name(path: Path) -> str:
    """appeal for letters/appeal.md and for its version letters/appeal.fr.md; appeal.v2 for letters/appeal.v2.md."""
    stem = path.name.removesuffix(".md")
    version = language_version(stem)
    return version[0] if version else stem


def read_letter(path: Path, *, name: str | None = None, base: Letter | None = None,
                language: str = "") -> Letter:
    """Read letters/<name>.md. Raises LetterError with the file and line of the problem.

    With base (the letter a translation translates), fields the file leaves out are taken from base.
    language is the letter's language unless its front matter says otherwise.
    """
    shown = name or f"letters/{path.name}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LetterError("letter not found", file=shown,
                          hint="check the name (letters/<name>.md) or [campaign] letter in dispatch.toml") from None
    except UnicodeDecodeError as exc:
        raise LetterError(f"not UTF-8 text (byte {exc.start})", file=shown, hint="save the letter as UTF-8") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise LetterError("the letter must start with front matter between two '---' lines", file=shown, line=1,
                          hint="begin with ---, then subject:, date:, ..., then --- and the body")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise LetterError("the front matter is never closed", file=shown, line=1,
                          hint="add a line with --- between the front matter and the body") from None
    try:
        meta = yaml.load("\n".join(lines[1:end]), Loader=_FrontMatterLoader) or {}
    except _WrongValue as exc:
        line = exc.mark.line + 2
        key = lines[line - 1].split(":", 1)[0].strip().lstrip("- ") if ":" in lines[line - 1] else ""
        raise LetterError(exc.message, file=shown, line=line, column=key if key in FIELDS else None,
                          hint=exc.hint) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark else 2
        column = f"column {mark.column + 1}" if mark else None
        raise LetterError(f"front matter: {exc.problem or exc.context}", file=shown, line=line, column=column,
                          hint="front matter is YAML: 'key: value' per line; quote values that contain ':' or '#'") from None
    except yaml.YAMLError as exc:
        raise LetterError(f"front matter: {exc}", file=shown, line=2) from None
    if not isinstance(meta, dict):
        raise LetterError("front matter must be 'key: value' lines", file=shown, line=2)

    def line_of(key: str) -> int:
        for number in range(1, end):
            if lines[number].split(":", 1)[0].strip() == key:
                return number + 1
        return 2

    for key in meta:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            raise LetterError(f"unknown front matter field '{key}'", file=shown, line=line_of(str(key)),
                              hint=f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(FIELDS)}")
    for key in REQUIRED if base is None else ():
        if not meta.get(key):
            raise LetterError(f"front matter has no '{key}'", file=shown, line=1,
                              hint=f"add a line '{key}: ...' between the --- lines")

    def text_field(key: str, default: str = "") -> str:
        value = meta.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str | int | float):
            raise LetterError(f"'{key}' must be text", file=shown, line=line_of(key),
                              hint="put the value in double quotes on the same line")
        return str(value)

    def list_field(key: str) -> tuple[str, ...]:
        value = meta.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise LetterError(f"'{key}' must be a list of names, one per line starting with '- '",
                              file=shown, line=line_of(key),
                              hint=f"write '{key}:' on its own line, then '  - \"Name\"' lines below it")
        return tuple(v.strip() for v in value if v.strip())

    for key in ("title", "subject", "place"):
        if any(ch in text_field(key) for ch in "\r\n\x00\u2028\u2029"):
            raise LetterError(f"'{key}' must be on one line", file=shown, line=line_of(key),
                              hint="it becomes an email subject and a PDF title: remove the line break")
    date = meta.get("date")
    if isinstance(date, dt.datetime):
        date = date.date()
    if not isinstance(date, dt.date):
        date = text_field("date")
    written_in = text_field("language", "").strip()
    if written_in and not LANGUAGE_CODE.match(written_in):
        raise LetterError(f"unknown language {written_in!r}", file=shown, line=line_of("language"),
                          hint="use a two-letter ISO 639-1 code in lower case, e.g. en, fr, es, ar")
    if written_in and base is not None and written_in != language:
        raise LetterError(f"the file name says the letter is in {language!r}, its front matter says {written_in!r}",
                          file=shown, line=line_of("language"),
                          hint="rename the file or remove the 'language' line")
    page_label = text_field("page_label")
    if page_label and (problem := page_label_problem(page_label)):
        raise LetterError(problem, file=shown, line=line_of("page_label"),
                          hint='write it like "Seite {page} von {pages}"')
    subject = text_field("subject")
    letter = Letter(
        name=base.name if base is not None else letter_name(path),
        path=path,
        title=text_field("title", subject),
        subject=subject,
        place=text_field("place"),
        date=date,
        template=text_field("template", DEFAULT_TEMPLATE),
        senders=list_field("senders"),
        signatories=list_field("signatories"),
        body="\n".join(lines[end + 1:]),
        body_line=end + 2,
        extra={"language": written_in},
        language=written_in or language,
        salutation=text_field("salutation"),
        page_label=page_label,
    )
    if base is None:
        return letter
    inherited = {key: getattr(base, key) for key in _INHERITED if key not in meta}
    if "title" not in meta and "subject" in meta:
        inherited.pop("title", None)  # a translated subject is a better title than the original's
    return dataclasses.replace(letter, **inherited)


class _WrongValue(Exception):
    """A value YAML reads but cannot be: an impossible date, a key given twice."""

    def __init__(self, mark: yaml.Mark, message: str, hint: str) -> None:
        super().__init__(message)
        self.mark, self.message, self.hint = mark, message, hint


class _FrontMatterLoader(yaml.SafeLoader):
    """YAML's safe loader, with an impossible date and a repeated key as errors placed at their line
    (PyYAML raises a bare ValueError for 2020-02-30 and keeps the last of two equal keys silently)."""

    def construct_yaml_timestamp(self, node: yaml.Node):
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise _WrongValue(node.start_mark, f"{node.value} is not a valid date ({exc})",
                              "write a real date as YYYY-MM-DD, e.g. 2020-04-28 (a time, if any, as HH:MM "
                              "with hours 0-23); put the value in double quotes to print it as written") from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, yaml.Mark] = {}
        for key_node, _value in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen:
                raise _WrongValue(key_node.start_mark, f"'{key}' is given twice (first on line {seen[key].line + 2})",
                                  "keep one of the two lines")
            if key is not None:
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_FrontMatterLoader.add_constructor("tag:yaml.org,2002:timestamp", _FrontMatterLoader.construct_yaml_timestamp)


# Front matter a translation may leave out: it is the same in every language unless said otherwise.
_INHERITED = ("title", "subject", "place", "date", "template", "senders", "signatories")


@dataclass(frozen=True)
class LetterVersions:
    """A letter and its translations, by language."""

    letter: Letter
    translations: Mapping[str, Letter]

    @property
    def languages(self) -> tuple[str, ...]:
        return (self.letter.language, *sorted(self.translations))

    def all(self) -> list[Letter]:
        return [self.letter, *(self.translations[code] for code in sorted(self.translations))]

    def choose(self, language: str) -> Letter:
        """The version in this language, or the letter itself when it has no such translation."""
        return self.translations.get(language, self.letter)

    def has(self, language: str) -> bool:
        return language == self.letter.language or language in self.translations


def translation_files(letters: Path, name: str) -> dict[str, Path]:
    """letters/<name>.<language>.md files, by language (letters/<name>.v2.md is another letter)."""
    found = {}
    for path in sorted(letters.glob(f"{glob_escape(name)}.*.md")):
        version = language_version(path.name.removesuffix(".md"))
        if version is None or version[0] != name:
            continue
        code = version[1]
        if not LANGUAGE_CODE.match(code):
            usual = re.split(r"[-_]", code)[0]
            raise LetterError(f"{code!r} cannot be chosen by any recipient: the language column holds two-letter codes",
                              file=f"letters/{path.name}",
                              hint=f"rename it {name}.{usual}.md" if len(usual) == 2 else
                              f"rename it {name}.<code>.md with the language's two-letter ISO 639-1 code")
        found[code] = path
    return found


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def read_letter_versions(path: Path, *, name: str | None = None, language: str = "en") -> LetterVersions:
    """Read letters/<name>.md and every letters/<name>.<language>.md beside it.

    language is the letter's language when its front matter does not name one (the campaign's).
    A translation in the letter's own language is an error: which one would win?
    """
    shown = name or f"letters/{path.name}"
    letter = read_letter(path, name=shown, language=language)
    translations = {}
    for code, translated in translation_files(path.parent, path.name[:-len(".md")]).items():
        translated_shown = str(Path(shown).with_name(translated.name))
        if code == letter.language:
            raise LetterError(f"a translation into {code!r}, the language the letter is written in",
                              file=translated_shown,
                              hint=f"remove one of the two, or set 'language:' in {shown} to the letter's language")
        translations[code] = read_letter(translated, name=translated_shown, base=letter, language=code)
    return LetterVersions(letter, translations)
