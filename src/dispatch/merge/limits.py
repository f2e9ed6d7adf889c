"""What a template may build: every text, list or number it makes is measured before it is made.

A template that asks for `"x".ljust(1500000000)`, `"%1500000000s" % x`, `[1] * 10**9` or a join of
something enormous is stopped before Python allocates anything large: the arguments are checked first.
The limit is the one of the merge (a letter, an email, a print layout): no value a template makes, and
no output, is larger than it. sandbox.py applies these checks to operators, methods, filters, blocks,
`~` and printed values; time is limited there too.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from jinja2.sandbox import SecurityError, SandboxedFormatter, SandboxedEscapeFormatter
from jinja2.utils import Namespace


@dataclass(frozen=True)
class Limits:
    """How much one merge may make (characters, also items of a list) and for how long it may run."""

    noun: str  # what is merged, for messages: "a letter", "an email", "a print layout"
    chars: int
    seconds: float = 10.0


LETTER = Limits("a letter", 2_000_000)
EMAIL = Limits("an email", 1_000_000)
PRINT_LAYOUT = Limits("a print layout", 40_000_000)  # envelopes, labels or the manifest of every letter at once
ATTACHMENT_NAME_CHARS = 10_000  # the [email] attachment setting, before it is cut to a file name


class LimitExceeded(SecurityError):
    """A template asked for a value or an output larger than its merge may hold (raised before making it)."""

    def __init__(self, what: str, limits: Limits) -> None:
        super().__init__(f"{what} would make more text than {limits.noun} can hold")
        self.place: tuple[str | None, int] | None = None  # set when it is not where the traceback ends
        self.hint = (f"a template may make at most {limits.chars:,} characters; look for a width, a count or a "
                     "repetition that is far too large, or a loop that adds text without end")


_TEXT = (str, bytes, bytearray)
_SEQUENCES = (list, tuple, set, frozenset, range)


def size(value: Any, limit: int, indent: int = 0) -> int:
    """About how many characters value becomes as text, counted up to limit + 1 (a larger value stops the count).

    A container used twice counts twice, as str() writes it twice, but is measured once; one that holds itself
    counts as `[...]`, as str() writes it. indent: characters added per level of nesting on each item (json or
    pprint indentation)."""
    if isinstance(value, _TEXT):
        return min(len(value), limit + 1)
    measured: dict[tuple[int, int], int] = {}

    def walk(item: Any, depth: int) -> int:
        if isinstance(item, _TEXT):
            return len(item)
        if item is None or isinstance(item, bool):
            return 5
        if isinstance(item, int):
            return item.bit_length() // 3 + 1
        if isinstance(item, Namespace):
            item = object.__getattribute__(item, "_Namespace__attrs")
        if not isinstance(item, _SEQUENCES) and not isinstance(item, Mapping):
            return 16
        key = (id(item), depth if indent else 0)
        if key in measured:
            return measured[key]
        measured[key] = 5  # while it is measured: a container that holds itself prints as [...]
        total = 2 + (4 + indent * (depth + 1)) * len(item)
        if type(item) is range:
            total += len(item) * len(str(item.stop))
        else:
            for part in (part for pair in item.items() for part in pair) if isinstance(item, Mapping) else item:
                if total > limit:
                    break
                total += walk(part, depth + 1)
        measured[key] = total
        return total

    try:
        return min(walk(value, 0), limit + 1)
    except RecursionError:  # nested deeper than Python can print
        return limit + 1


def check(what: str, chars: int, limits: Limits) -> None:
    if chars > limits.chars:
        raise LimitExceeded(what, limits)


def check_values(what: str, values: Iterable[Any], limits: Limits) -> None:
    """Refuse when the values together would make more text than the limit."""
    left = limits.chars
    for value in values:
        left -= size(value, left)
        if left < 0:
            raise LimitExceeded(what, limits)


def count(value: Any) -> int:
    """A width or count a template passed: its value when it is an integer, else 0 (Python refuses it later)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def items(iterable: Any, what: str, limits: Limits) -> list[Any]:
    """The items of iterable as a list, refusing (before going on) when there are more than the limit."""
    taken = list(itertools.islice(iter(iterable), limits.chars + 1))
    if len(taken) > limits.chars:
        raise LimitExceeded(what, limits)
    return taken


# printf-style conversions: %[(key)][flags][width][.precision][length]type
_PRINTF = re.compile(r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?[hlL]?"
                     r"(?P<type>[diouxXeEfFgGcrsab%])")


def check_printf(fmt: str, args: Any, limits: Limits) -> None:
    """Refuse `fmt % args` when its widths, precisions and values would make more than the limit."""
    values = args if isinstance(args, tuple) else (args,)
    mapping = args if isinstance(args, Mapping) else None
    left, index = limits.chars - len(fmt), 0
    for match in _PRINTF.finditer(fmt):
        if match["type"] == "%":
            continue
        for part in ("width", "precision"):
            number = match[part]
            if number == "*":
                number = count(values[index]) if index < len(values) else 0
                index += 1
            elif number:
                number = int(number) if len(number) < 12 else limits.chars + 1
            left -= abs(number or 0)
        if match["key"] is not None:
            value = mapping.get(match["key"]) if mapping is not None else None
        else:
            value = values[index] if index < len(values) else None
            index += 1
        left -= size(value, max(left, 0))
        if left < 0:
            spec = match.group(0)
            raise LimitExceeded(f"the format {spec[:40]!r}", limits)


class _CappedFormatter:
    """str.format in the sandbox, with every field's width, precision and value checked before it is formatted."""

    limits: Limits

    def vformat(self, format_string, args, kwargs):
        self._left = self.limits.chars - len(format_string)
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value, conversion):
        if conversion:
            check_values("this format field", (value,), self.limits)
        return super().convert_field(value, conversion)

    def format_field(self, value, format_spec):
        numbers = [int(n) if len(n) < 12 else self.limits.chars + 1 for n in re.findall(r"\d+", format_spec)]
        self._left -= size(value, max(self._left, 0)) + sum(numbers)
        if self._left < 0:
            raise LimitExceeded(f"the format field {format_spec[:40]!r}", self.limits)
        return super().format_field(value, format_spec)


def formatter(env, limits: Limits, escape: Callable | None = None) -> SandboxedFormatter:
    """A sandboxed str.format formatter within limits (escape: Markup's, for Markup.format)."""
    if escape is None:
        made = type("LimitedFormatter", (_CappedFormatter, SandboxedFormatter), {})(env)
    else:
        made = type("LimitedEscapeFormatter", (_CappedFormatter, SandboxedEscapeFormatter), {})(env, escape=escape)
    made.limits = limits
    return made


# Methods that make a larger text or container than the one they are called on, and how large.
def _str_method_size(owner: Any, name: str, args: tuple, kwargs: dict, limits: Limits) -> tuple[int, tuple]:
    length = len(owner)
    if name in ("ljust", "rjust", "center", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        return max(length, count(width)), args
    if name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        tab = "\t" if isinstance(owner, str) else b"\t"
        return length + owner.count(tab) * max(count(tabsize), 1), args
    if name == "replace":
        old, new = (list(args) + [None, None])[:2]
        if not isinstance(old, type(owner)) or not isinstance(new, type(owner)):
            return length, args
        found = owner.count(old) if old else length + 1
        most = args[2] if len(args) > 2 else kwargs.get("count", -1)
        times = found if not isinstance(most, int) or most < 0 else min(found, most)
        return length + times * max(0, len(new) - len(old)), args
    if name == "join":
        parts = items(args[0] if args else (), f"{name}()", limits)
        total = size(parts, limits.chars) + length * max(len(parts) - 1, 0)
        return total, (parts, *args[1:])
    if name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((size(v, limits.chars) for v in args[0].values()), default=1)
        return length * max(longest, 1), args
    return length, args


_STR_METHODS = frozenset(["ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join", "translate"])
_GROWING = {list: frozenset(["append", "extend", "insert"]), dict: frozenset(["update", "setdefault"]),
            set: frozenset(["add", "update"]), bytearray: frozenset(["append", "extend", "insert"])}


def limited_method(value: Any, limits: Limits) -> Callable | None:
    """A checked version of value when it is a bound method that makes large texts or grows a container."""
    owner, name = getattr(value, "__self__", None), getattr(value, "__name__", None)
    if not isinstance(name, str) or owner is None or isinstance(owner, type):
        return None
    if isinstance(owner, str | bytes | bytearray) and name in _STR_METHODS:
        def checked(*args, **kwargs):
            total, args = _str_method_size(owner, name, args, kwargs, limits)
            check(f"{name}({', '.join(_short(a) for a in args)})", total, limits)
            return value(*args, **kwargs)
        return checked
    grows = next((names for kind, names in _GROWING.items() if isinstance(owner, kind)), frozenset())
    if name not in grows:
        return None

    def growing(*args, **kwargs):
        added = 1
        if name in ("extend", "update"):
            sources = [items(a.items() if isinstance(a, Mapping) else a, f"{name}()", limits) for a in args]
            args = tuple(dict(s) if isinstance(a, Mapping) else s for a, s in zip(args, sources))
            added = sum(len(s) for s in sources) + len(kwargs)
        check(f"{name}()", len(owner) + added, limits)
        return value(*args, **kwargs)
    return growing


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, int | str) else type(value).__name__
    return text if len(text) <= 24 else text[:20] + "…"


class OutputBuffer(list):
    """The text a macro, a {% set %} block, a {% filter %} or an imported template builds, within the limit."""

    __slots__ = ("left", "limits")

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits, self.left = limits, limits.chars

    def append(self, piece: str) -> None:
        self.left -= len(piece)
        if self.left < 0:
            raise LimitExceeded("this block of text", self.limits)
        list.append(self, piece)

    def extend(self, pieces: Iterable[str]) -> None:
        for piece in pieces:
            self.append(piece)


def namespace_class(limits: Limits) -> type:
    """Jinja2's namespace(), whose texts ({% set ns.x = ... %}) are checked before they are kept.

    (The operations that make a value are checked already; this stops a text that grows from one loop to the
    next at the step it passes the limit. Containers are not walked here: a list that holds itself twice,
    level after level, costs two references per level, and is measured when it is printed or joined.)"""

    class LimitedNamespace(Namespace):
        def __setitem__(self, name: str, value: Any) -> None:
            if isinstance(value, _TEXT):
                check("this value", len(value), limits)
            super().__setitem__(name, value)

    return LimitedNamespace
