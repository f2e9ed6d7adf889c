"""Every error a user can cause is a DispatchError: it knows where (file, line, column) and what to do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's files, placed as precisely as we can."""

    message: str
    file: str | None = None
    line: int | None = None
    column: str | None = None
    hint: str | None = None
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        place = ""
        if self.file:
            place = self.file + (f":{self.line}" if self.line else "") + ": "
        if self.column:
            place += f"{self.column}: "
        return place + self.message


@dataclass(frozen=True)
class CellProblem(Problem):
    """A problem in a spreadsheet, placed as its user reads it: the sheet, then the cell (or the row).

    line is the row number the spreadsheet shows; cell is its reference ("E14") when one cell is at fault.
    Printed as `missions.xlsx: sheet Missions, cell E14 (email): ...`.
    """

    sheet: str = ""
    cell: str | None = None

    def __str__(self) -> str:
        where = f"sheet {self.sheet}"
        if self.cell:
            where += f", cell {self.cell}"
        elif self.line:
            where += f", row {self.line}"
        if self.column:
            where += f" ({self.column})"
        return f"{self.file}: {where}: {self.message}"


class DispatchError(Exception):
    """Root of every error dispatch reports to the user (never a bug)."""

    exit_code = 1

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: str | None = None, hint: str | None = None, sheet: str | None = None,
                 cell: str | None = None) -> None:
        if sheet is None:
            self.problem = Problem(message, file=file, line=line, column=column, hint=hint)
        else:  # in a workbook: placed by sheet and cell
            self.problem = CellProblem(message, file=file, line=line, column=column, hint=hint, sheet=sheet,
                                       cell=cell)
        super().__init__(str(self.problem))

    @property
    def hint(self) -> str | None:
        return self.problem.hint

    @property
    def problems(self) -> list[Problem]:
        return [self.problem]


class WorkspaceError(DispatchError):
    """The campaign folder or its settings file is missing or wrong."""


class SettingsError(WorkspaceError):
    """dispatch.toml cannot be read or holds a wrong value."""


class RecipientsError(DispatchError):
    """The recipient list (recipients.csv, or a workbook) cannot be read."""


class LetterError(DispatchError):
    """A letter file cannot be read."""


class TemplateError(DispatchError):
    """A template or the letter's Jinja2 expressions are wrong."""


class RenderError(DispatchError):
    """A PDF could not be produced or written."""


class SendError(DispatchError):
    """Sending failed as a whole (connection, authentication, settings)."""


class SignError(DispatchError):
    """A signing key cannot be opened or a PDF cannot be signed."""


class JournalError(DispatchError):
    """The journal (dispatch.db) cannot be read or written."""


class ValidationFailed(DispatchError):
    """Several problems at once, found by validation before anything was written."""

    def __init__(self, problems: list[Problem]) -> None:
        # Errors first: they are why nothing was done; warnings follow.
        self._problems = sorted(problems, key=lambda p: p.severity != "error")
        errors = [p for p in self._problems if p.severity == "error"]
        first = errors[0] if errors else self._problems[0]
        super().__init__(first.message, file=first.file, line=first.line, column=first.column,
                         hint=first.hint, sheet=getattr(first, "sheet", None), cell=getattr(first, "cell", None))

    @property
    def problems(self) -> list[Problem]:
        return self._problems


class PrintError(DispatchError):
    """The print run cannot be made: a missing address, an address that does not fit, a wrong print setting."""
