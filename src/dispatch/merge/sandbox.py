"""One Jinja2 sandbox for every template dispatch merges: the letter's body and layout, the email's text,
HTML and attachment name, and the print layouts (envelopes, labels, manifest).

Every environment comes from environment() and has the same rules:
- Jinja2's SandboxedEnvironment (no access to Python internals) with StrictUndefined;
- files from templates/ only (loader.ConfinedLoader: the PDF renderer's rule);
- limits (limits.py), checked before a value is made: the operators `*`, `**`, `+`, `%`, the methods of
  texts and containers, the filters, `~`, blocks that collect text, namespaces, and what is printed;
- a time budget for each merge (SIGALRM in the main thread; elsewhere a deadline checked at each call
  and each piece of output).
Any failure becomes a TemplateError placed at the template's file and line, with a hint (template_error).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass
from functools import update_wrapper
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import jinja2
from jinja2.compiler import CodeGenerator, optimizeconst
from jinja2.environment import TemplateModule
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from jinja2.utils import generate_lorem_ipsum
from markupsafe import Markup

from dispatch.errors import DispatchError, TemplateError
from dispatch.merge.filters import limited_filters
from dispatch.merge.limits import (LimitExceeded, Limits, OutputBuffer, check, check_printf, check_values,
                                   formatter, limited_method, namespace_class)
from dispatch.merge.loader import ConfinedLoader, TemplateRefused

MAX_NUMBER_BITS = 100_000  # about 30,000 digits; Python prints at most 4,300


class TimeBudgetExceeded(Exception):
    """A merge ran longer than its limits allow. place: (file, line) of the template running then."""

    def __init__(self, place: tuple[str | None, int] | None = None) -> None:
        super().__init__("time budget exceeded")
        self.place = place


class OutputTooLong(Exception):
    """A merge's output grew past `chars`. place: (file, line) of the template writing then."""

    def __init__(self, chars: int, place: tuple[str | None, int] | None = None) -> None:
        super().__init__("output too long")
        self.chars, self.place = chars, place


class _LimitedCodeGenerator(CodeGenerator):
    """Jinja2's compiler, but blocks that collect text use a limited buffer, and `~` checks its parts."""

    def buffer(self, frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")

    @optimizeconst
    def visit_Concat(self, node, frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.limited_concat({join}, (")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write("))")


class LimitedTemplate(jinja2.Template):
    """A template whose module (for {% import %}) is built within the limits, like its output."""

    def make_module(self, vars=None, shared=False, locals=None) -> TemplateModule:
        context = self.new_context(vars, shared, locals)
        body = self.environment.output_buffer()
        stream = self.root_render_func(context)
        try:
            body.extend(stream)
        except LimitExceeded as exc:  # raised between two pieces: placed where the imported template was
            exc.place = exc.place or _suspended_place(stream)
            raise
        return TemplateModule(self, context, body)


class LimitedSandbox(SandboxedEnvironment):
    """Jinja2's sandbox, with every value a template makes checked against its limits before it is made."""

    intercepted_binops = frozenset(["*", "**", "+", "%"])
    code_generator_class = _LimitedCodeGenerator
    template_class = LimitedTemplate

    def __init__(self, *, limits: Limits, finalize: Callable[[Any], Any] | None = None, **options: Any) -> None:
        self.limits = limits

        def finalized(value: Any) -> Any:
            if not isinstance(value, str) or len(value) > limits.chars:
                check_values("printing this value", (value,), limits)
            return finalize(value) if finalize is not None else value

        super().__init__(finalize=finalized, **options)
        self.filters = limited_filters(self.filters, limits)
        self.globals["namespace"] = namespace_class(limits)
        self.globals["lipsum"] = self._lipsum

    def add_filters(self, filters: Mapping[str, Callable]) -> None:
        """Add filters of the caller's own, checked like Jinja2's."""
        self.filters.update(limited_filters(filters, self.limits))

    def _lipsum(self, n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        check(f"lipsum({n})", n * max * 12 if isinstance(n, int) and isinstance(max, int) else 0, self.limits)
        return generate_lorem_ipsum(n, html, min, max)

    def output_buffer(self) -> OutputBuffer:
        return OutputBuffer(self.limits)

    def limited_concat(self, join: Callable, parts: tuple) -> str:
        check_values("joining these texts with ~", parts, self.limits)
        return join(parts)

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        limits = self.limits
        if operator == "**" and isinstance(right, int | float):
            if abs(right) > 64:
                raise SecurityError(f"the power {right} is too large")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > MAX_NUMBER_BITS:
                raise LimitExceeded("this power", limits)
        elif operator == "*":
            for value, times in ((left, right), (right, left)):
                if isinstance(value, str | bytes | list | tuple) and isinstance(times, int):
                    check("this repetition", len(value) * times, limits)
            if isinstance(left, int) and isinstance(right, int) \
                    and left.bit_length() + right.bit_length() > MAX_NUMBER_BITS:
                raise LimitExceeded("this multiplication", limits)
        elif operator == "+":
            if isinstance(left, str | bytes | list | tuple) and isinstance(right, str | bytes | list | tuple):
                check("this addition", len(left) + len(right), limits)
        elif operator == "%" and isinstance(left, str):
            check_printf(left, right, limits)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        value = super().getattr(obj, attribute)
        return limited_method(value, self.limits) or value

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        return limited_method(value, self.limits) or value

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """str.format and str.format_map, sandboxed as Jinja2 does, with each field checked first."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) \
                or value.__name__ not in ("format", "format_map") or not isinstance(value.__self__, str):
            return None
        owner = value.__self__
        format_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            made = formatter(self, self.limits, escape=owner.escape if isinstance(owner, Markup) else None)
            return type(owner)(made.vformat(owner, args, kwargs))

        return update_wrapper(wrapper, value)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja2's signature)
        _check_deadline()
        return super().call(__context, __obj, *args, **kwargs)


def environment(limits: Limits, *, templates: Path | None = None, loader: jinja2.BaseLoader | None = None,
                autoescape: bool, finalize: Callable[[Any], Any] | None = None,
                filters: Mapping[str, Callable] | None = None, keep_trailing_newline: bool = False) -> LimitedSandbox:
    """The sandbox for one kind of template: files from templates/ (or loader), strict about undefined names."""
    if loader is None:
        if templates is None:
            raise ValueError("a loader or the templates folder is needed")
        loader = ConfinedLoader(templates)
    env = LimitedSandbox(limits=limits, loader=loader, autoescape=autoescape, finalize=finalize,
                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                         keep_trailing_newline=keep_trailing_newline)
    env.add_filters(filters or {})
    return env


# The time budget: SIGALRM in the main thread, a deadline looked at by call() and generate() elsewhere.
_budget = threading.local()


@contextlib.contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Stop the enclosed merge with TimeBudgetExceeded after `seconds` (an enclosing budget, if any, counts)."""
    if getattr(_budget, "deadline", None) is not None:
        yield
        return
    _budget.deadline = time.monotonic() + seconds
    alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    try:
        if not alarm:
            yield
            return

        def expire(signum, frame):
            raise TimeBudgetExceeded(_running_place(frame))

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
            finally:  # also when the alarm went off just now
                signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
    finally:
        _budget.deadline = None


def _check_deadline() -> None:
    deadline = getattr(_budget, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise TimeBudgetExceeded(_running_place(_caller_frame()))


def _caller_frame():
    return sys._getframe(2)


def _frame_place(frame) -> tuple[str | None, int] | None:
    template = frame.f_globals.get("__jinja_template__")
    if template is None:
        return None
    return template.filename, template.get_corresponding_lineno(frame.f_lineno)


def _running_place(frame) -> tuple[str | None, int] | None:
    """The template file and line being run in frame or the frames that called it."""
    while frame is not None:
        place = _frame_place(frame)
        if place is not None:
            return place
        frame = frame.f_back
    return None


def _suspended_place(stream) -> tuple[str | None, int] | None:
    """The template file and line where a template's output stream (a generator) is paused."""
    place = None
    while stream is not None and getattr(stream, "gi_frame", None) is not None:
        place = _frame_place(stream.gi_frame) or place
        stream = getattr(stream, "gi_yieldfrom", None)
    return place


def generate(template: jinja2.Template, variables: Mapping[str, Any], *, chars: int | None = None,
             ) -> tuple[str, jinja2.runtime.Context]:
    """The template's output and its context (for the names it set), within its environment's limits.

    Raises what the template raised (traceback mapped to template lines), TimeBudgetExceeded or OutputTooLong."""
    env = template.environment
    chars = env.limits.chars if chars is None else chars
    left = chars
    context = template.new_context(dict(variables))
    parts: list[str] = []
    with time_budget(env.limits.seconds):
        stream = template.root_render_func(context)
        try:
            # In batches of 64 pieces (each no larger than the limit: printed values are checked), measured
            # before they are joined.
            while batch := list(itertools.islice(stream, 64)):
                left -= sum(map(len, batch))
                if left < 0:
                    raise OutputTooLong(chars, _suspended_place(stream))
                parts.extend(batch)
                _check_deadline()
        except (OutputTooLong, TimeBudgetExceeded) as exc:
            exc.place = exc.place or _suspended_place(stream)
            raise
        except Exception:
            env.handle_exception()  # raises it again, its traceback mapped to the template's lines
        finally:
            stream.close()
    return "".join(parts), context


@dataclass(frozen=True)
class Source:
    """Where a merge's templates are, to name files in messages: templates/<name>, or the letter's file."""

    templates: Path
    shown: str  # the file named when no line can be found
    letter_file: str | None = None

    def name(self, filename: str | None) -> str | None:
        """templates/<name> or the letter's file for a template's file name; None when it is neither."""
        if not filename:
            return None
        if filename == self.letter_file:
            return filename
        root = os.path.normpath(str(self.templates))
        if os.path.normpath(filename).startswith(root + os.sep):
            return "templates/" + os.path.relpath(filename, root).replace(os.sep, "/")
        return None

    def place(self, exc: BaseException) -> tuple[str, int | None]:
        """The file and line where exc happened (Jinja2 maps tracebacks to template lines)."""
        if getattr(exc, "place", None):  # TimeBudgetExceeded, OutputTooLong, a LimitExceeded between pieces
            return self.name(exc.place[0]) or self.shown, exc.place[1]
        if isinstance(exc, jinja2.TemplateSyntaxError):
            return self.name(exc.filename) or self.shown, exc.lineno
        for frame, line in reversed(list(traceback.walk_tb(exc.__traceback__))):
            name = self.name(frame.f_code.co_filename)
            if name:
                return name, line
        return self.shown, None


_PAIRS_HINT = "check the {{ }} and {% %} pairs near this line"
_NOT_FOUND_HINT = "templates are looked up in the workspace's templates/ folder only"
_SANDBOX_HINT = "templates run in a sandbox: no huge values, no access to Python internals"
_EVALUATION_HINTS = {
    RecursionError: "look for a macro that calls itself without end",
    OverflowError: "numbers and ranges are limited in a template (range() to 100,000 numbers): "
                   "look for a loop that repeats too often",
    MemoryError: "look for a loop or a value that grows without end",
}


def template_error(exc: BaseException, source: Source, limits: Limits, *, who: str = "", row: str = "",
                   output: str = "the output",
                   undefined_hint: str = "add the column to recipients.csv, or fix the name in the template",
                   ) -> DispatchError:
    """The user-facing error for what a template raised: file:line, the problem, a hint.

    who: whose merge it was ("recipient 'NA'"), row: more about it for undefined names (", recipients.csv
    line 2"), output: what grew too long ("the letter for recipient 'NA'")."""
    if isinstance(exc, DispatchError):
        return exc
    file, line = source.place(exc)
    suffix = f" ({who})" if who else ""
    if isinstance(exc, TemplateRefused):
        return TemplateError(str(exc.message), file=file, line=line, hint=exc.hint)
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return TemplateError(f"template syntax error: {exc.message}", file=file, line=line, hint=_PAIRS_HINT)
    if isinstance(exc, jinja2.TemplateNotFound):
        return TemplateError(f"template not found: {exc.name}", file=file, line=line, hint=_NOT_FOUND_HINT)
    if isinstance(exc, jinja2.UndefinedError):
        return TemplateError(f"{exc.message}{f' ({who}{row})' if who else ''}", file=file, line=line,
                             hint=undefined_hint)
    if isinstance(exc, OutputTooLong):
        return TemplateError(f"{output} grows past {exc.chars:,} characters", file=file, line=line,
                             hint="look for a loop that repeats text without end")
    if isinstance(exc, TimeBudgetExceeded):
        return TemplateError(f"the template ran for more than {limits.seconds:g} s{suffix}", file=file, line=line,
                             hint="look for a loop that never ends or repeats too often")
    if isinstance(exc, SecurityError):
        return TemplateError(f"not allowed in a template: {exc}{suffix}", file=file, line=line,
                             hint=getattr(exc, "hint", None) or _SANDBOX_HINT)
    for kind, hint in _EVALUATION_HINTS.items():
        if isinstance(exc, kind):
            return TemplateError(f"the template could not be evaluated ({type(exc).__name__})"
                                 f"{f' for {who}' if who else ''}", file=file, line=line, hint=hint)
    return TemplateError(f"{type(exc).__name__}: {exc}{suffix}", file=file, line=line,
                         hint="check the expression on this line")


def load(env: jinja2.Environment, name: str, source: Source) -> jinja2.Template:
    """The compiled template called name, or a TemplateError naming its file (and line)."""
    try:
        return env.get_template(name)
    except TemplateRefused as exc:
        raise TemplateError(str(exc.message), file=source.shown, hint=exc.hint) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}", file=source.name(exc.filename) or source.shown,
                            line=exc.lineno, hint=_PAIRS_HINT) from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template not found: {exc.name}", file=source.shown, hint=_NOT_FOUND_HINT) from None
    except (RecursionError, MemoryError, SyntaxError) as exc:  # Jinja2's parser or Python's compiler gave up
        raise TemplateError(f"the template could not be compiled ({type(exc).__name__})", file=source.shown,
                            hint="look for blocks, brackets or parentheses nested too deeply") from None
