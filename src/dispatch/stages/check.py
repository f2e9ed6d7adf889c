"""Checking a campaign before anything is written: settings, letter versions, recipients, merging, fonts.

check() reads the campaign once and merges every letter once; what it merged is shown to the caller
(on_merged), so rendering can start on a letter while the others are checked.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable

from dispatch import i18n
from dispatch.errors import DispatchError, Problem, TemplateError, ValidationFailed
from dispatch.glyphs import FontCoverage, describe, html_text
from dispatch.inputs import Campaign, read_table, read_versions
from dispatch.letters import LetterVersions
from dispatch.merge.letter import Merged
from dispatch.merge.versions import VersionMerger
from dispatch.models import Recipient
from dispatch.pdf.engine import is_pdf_variant, pdf_variants
from dispatch.recipients import RecipientTable, check_recipients
from dispatch.workspace import Workspace

OnMerged = Callable[[Recipient, Merged], None]


def validate(ws: Workspace, letter: str | None = None, *, only: Iterable[str] | None = None,
             variants: Callable[[], tuple[str, ...]] = pdf_variants) -> tuple[list[Problem], Campaign | None]:
    """Every problem with the settings, recipients, letter and templates (nothing is written), and the
    campaign when it could be read. only: merge and check the fonts of these recipients alone (preview);
    variants: where the PDF variants WeasyPrint can write come from."""
    return _validate(ws, letter, None, only, variants)


def check(ws: Workspace, letter: str | None = None, *, on_merged: OnMerged | None = None,
          only: Iterable[str] | None = None,
          variants: Callable[[], tuple[str, ...]] = pdf_variants) -> tuple[Campaign, list[Problem]]:
    """Validate, refuse on any error (ValidationFailed), and return the campaign with the remaining warnings.

    on_merged sees each merged letter that passed its checks, while the others are still being checked."""
    problems, found = _validate(ws, letter, on_merged, only, variants)
    if found is None or any(p.severity == "error" for p in problems):
        raise ValidationFailed(problems)
    return found, problems


def _validate(ws: Workspace, letter: str | None, on_merged: OnMerged | None, only: Iterable[str] | None,
              variants: Callable[[], tuple[str, ...]]) -> tuple[list[Problem], Campaign | None]:
    problems: list[Problem] = []
    versions = table = None
    try:
        versions = read_versions(ws, letter)
    except DispatchError as exc:
        problems.extend(exc.problems)
    else:
        problems.extend(_wording_problems(versions))
    try:
        table = read_table(ws)
    except DispatchError as exc:
        problems.extend(exc.problems)
    if table is not None:
        problems.extend(check_recipients(table, default_language=ws.settings.language))
        problems.extend(_address_warnings(table))
    if versions is None or table is None:
        return _settings_problems(ws, variants) + problems, None
    found = Campaign(ws, versions, table)
    problems.extend(_fallback_warnings(found))
    if any(p.severity == "error" for p in problems):
        on_merged = None  # the campaign will not be rendered: its letters are merged only to find more problems
    problems.extend(_merge_problems(found, on_merged, None if only is None else frozenset(only)))
    # Checked last, reported first: the PDF variants come from WeasyPrint, which preview's renderer
    # process imports meanwhile.
    return _settings_problems(ws, variants) + problems, found


def _settings_problems(ws: Workspace, variants: Callable[[], tuple[str, ...]]) -> list[Problem]:
    variant = ws.settings.pdf_variant
    if variant and not is_pdf_variant(variant, variants):
        return [Problem(f"unknown PDF variant {variant!r}", file="dispatch.toml",
                        line=ws.settings.line("campaign", "pdf_variant"), column="pdf_variant",
                        hint=f"use one of {', '.join(variants())}, or \"\" for a plain PDF")]
    return []


def _wording_problems(versions: LetterVersions) -> list[Problem]:
    """A version in a language dispatch has no words for must bring its own salutation and page label."""
    problems = []
    for version in versions.all():
        missing = [key for key in ("salutation", "page_label") if not getattr(version, key)]
        if i18n.has_wording(version.language) or not missing:
            continue
        problems.append(Problem(
            f"dispatch does not know how to say {' and '.join(missing)} in "
            f"{i18n.language_name(version.language)} ({version.language!r})",
            file=f"letters/{version.path.name}", line=1,
            hint="add them to the front matter, e.g. salutation: \"Exzellenz,\" and "
                 "page_label: \"Seite {page} von {pages}\""))
    return problems


def _listed(rows: list[Recipient]) -> str:
    return ", ".join(r.id for r in rows[:12]) + (", ..." if len(rows) > 12 else "")


def _fallback_warnings(campaign: Campaign) -> list[Problem]:
    """Recipients whose language has no version of the letter: they get the letter as written."""
    missing: dict[str, list[Recipient]] = defaultdict(list)
    for recipient in campaign.recipients.rows:
        language = campaign.language_of(recipient)
        if not campaign.versions.has(language):
            missing[language].append(recipient)
    letter = campaign.letter
    problems = []
    for language, rows in sorted(missing.items()):
        problems.append(campaign.recipients.problem(
            f"{len(rows)} recipient(s) in {i18n.language_name(language)} ({language!r}) get the "
            f"{i18n.language_name(letter.language)} letter: {_listed(rows)}",
            row=rows[0], column="language", severity="warning",
            hint=f"add letters/{letter.name}.{language}.md to send them a translation"))
    return problems


def _address_warnings(table: RecipientTable) -> list[Problem]:
    missing = [r for r in table.rows if r.wants_print and not r.get("address").strip()]
    if not missing:
        return []
    return [table.problem(f"{len(missing)} recipient(s) to be printed have no postal address: {_listed(missing)}",
                          row=missing[0], column="address", severity="warning",
                          hint="letters are still rendered; envelopes and labels need an address")]


def _merge_problems(campaign: Campaign, on_merged: OnMerged | None, only: frozenset[str] | None) -> list[Problem]:
    """Merge every row (HTML only) so a name a row does not define is found before rendering."""
    try:
        merger = VersionMerger(campaign)
    except DispatchError as exc:
        return list(exc.problems)
    seen: dict[tuple, list[Recipient]] = defaultdict(list)
    first: dict[tuple, TemplateError] = {}
    coverage = FontCoverage(campaign.workspace.templates / "fonts")
    clean: set[str] = set()  # groups whose shared part every font check passed
    problems = []
    for recipient in campaign.recipients.rows:
        if only is not None and recipient.id not in only:
            continue
        try:
            merged = merger.merged(recipient)
        except TemplateError as exc:
            key = (exc.problem.file, exc.problem.line, exc.problem.message.split(" (recipient")[0])
            seen[key].append(recipient)
            first.setdefault(key, exc)
            continue
        parts = merged.parts()
        if parts.names and parts.group in clean:  # the shared part was checked: check what is the recipient's
            missing = coverage.missing(html_text("".join(parts.head + parts.contents)))
        else:
            missing = coverage.missing(html_text(merged.html))
            if not missing:
                clean.add(parts.group)
        if missing:
            problems.append(_glyph_problem(campaign, recipient, missing))
        elif on_merged is not None:
            on_merged(recipient, merged)
    for key, rows in seen.items():
        exc = first[key]
        message = key[2]
        if len(rows) > 1:
            table = campaign.recipients
            message += f" (for {len(rows)} recipients, first {rows[0].id!r} {table.where(rows[0])} of {table.file})"
        else:
            message = exc.problem.message
        problems.append(Problem(message, file=exc.problem.file, line=exc.problem.line, hint=exc.problem.hint))
    return problems


def _glyph_problem(campaign: Campaign, recipient: Recipient, missing: list[str]) -> Problem:
    hint = "add a font that has it to templates/fonts/ (and to letter.css), or write the text without it"
    for column, value in recipient.fields.items():
        found = [c for c in missing if c in value]
        if found:
            return campaign.recipients.problem(f"no font in templates/fonts/ can draw {describe(found)}",
                                               row=recipient, column=column, hint=hint)
    return Problem(f"no font in templates/fonts/ can draw {describe(missing)} (recipient {recipient.id!r})",
                   file=f"letters/{campaign.letter.path.name}", hint=hint)
