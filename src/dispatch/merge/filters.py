"""Jinja2's filters, each checked against the merge's limits before it runs.

A filter that turns its input into text gets input no larger than the limit; a filter whose arguments
can make its result far larger than its input (a width, a count, a separator, an indentation) has those
checked first: `"x"|center(1500000000)`, `"%1500000000s"|format(x)`, `items|batch(10**9, "x")` are
refused before anything is allocated.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping

from dispatch.merge.limits import Limits, check, check_printf, check_values, count, items, size

# Filters that do not turn their input into text (checked below when an argument can make them grow).
_NOT_TEXT = frozenset(["length", "count", "first", "last", "list", "sort", "dictsort", "map", "select", "reject",
                       "selectattr", "rejectattr", "unique", "min", "max", "sum", "batch", "slice", "groupby",
                       "items", "attr", "default", "d", "random", "reverse", "abs", "int", "float", "round", "bool",
                       "filesizeformat"])


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _center(a: dict, limits: Limits) -> None:
    check(f"center({count(a['width'])})", count(a["width"]), limits)


def _indent(a: dict, limits: Limits) -> None:
    width = a["width"]
    step = len(width) if isinstance(width, str) else count(width)
    check(f"indent({step})", step, limits)
    text = _text(a["s"])
    check(f"indent({step})", len(text) + (text.count("\n") + 1) * step, limits)


def _format(a: dict, limits: Limits) -> None:
    check_printf(_text(a["value"]), a["kwargs"] or a["args"], limits)


def _join(a: dict, limits: Limits) -> None:
    parts = a["value"] = items(a["value"], "this join", limits)
    separator = size(a["d"], limits.chars)
    check("this join", size(parts, limits.chars) + separator * max(len(parts) - 1, 0), limits)


def _replace(a: dict, limits: Limits) -> None:
    text, old, new = _text(a["s"]), _text(a["old"]), _text(a["new"])
    found = text.count(old) if old else len(text) + 1
    most = a["count"]
    times = found if not isinstance(most, int) or most < 0 else min(found, most)
    check("this replace", len(text) + times * max(0, len(new) - len(old)), limits)


def _wordwrap(a: dict, limits: Limits) -> None:
    text, wrap = _text(a["s"]), a["wrapstring"]
    joint = 1 if wrap is None else size(wrap, limits.chars)
    check("this wordwrap", len(text) + (len(text) // 2 + text.count("\n") + 1) * joint, limits)


def _urlize(a: dict, limits: Limits) -> None:
    text = _text(a["value"])
    links = sum(text.count(c) for c in ".@:")
    extra = 60 + size(a["target"] or "", limits.chars) + size(a["rel"] or "", limits.chars)
    check("this urlize", len(text) * 3 + links * extra, limits)


def _tojson(a: dict, limits: Limits) -> None:
    check("this tojson", size(a["value"], limits.chars, indent=count(a["indent"])), limits)


def _pprint(a: dict, limits: Limits) -> None:
    check("this pprint", size(a["value"], limits.chars, indent=1), limits)


def _batch(a: dict, limits: Limits) -> None:
    check(f"batch({count(a['linecount'])})", count(a["linecount"]), limits)


def _slice(a: dict, limits: Limits) -> None:
    check(f"slice({count(a['slices'])})", count(a["slices"]), limits)


def _sum(a: dict, limits: Limits) -> None:
    if isinstance(a["start"], int | float) and a["attribute"] is None:
        parts = a["iterable"] = items(a["iterable"], "this sum", limits)
        if all(isinstance(p, int | float) for p in parts):
            return
    else:
        parts = a["iterable"] = items(a["iterable"], "this sum", limits)
    check_values("this sum", (*parts, a["start"]), limits)


_ARGUMENTS: dict[str, Callable[[dict, Limits], None]] = {
    "center": _center, "indent": _indent, "format": _format, "join": _join, "replace": _replace,
    "wordwrap": _wordwrap, "urlize": _urlize, "tojson": _tojson, "pprint": _pprint, "batch": _batch,
    "slice": _slice, "sum": _sum,
}


def limited_filters(filters: Mapping[str, Callable], limits: Limits) -> dict[str, Callable]:
    """Each filter, checked before it runs (see the module's text)."""
    return {name: limited_filter(name, function, limits) for name, function in filters.items()}


def limited_filter(name: str, function: Callable, limits: Limits) -> Callable:
    if getattr(function, "dispatch_limited", False):
        return function
    passes = getattr(function, "jinja_pass_arg", None) is not None  # context, eval context or environment first
    arguments = _ARGUMENTS.get(name)
    bind = _binder(function) if arguments else None
    # Jinja2's async variants take the eval context first although the function they wrap does not: `lead`
    # arguments come before the wrapped function's own; the value filtered is the first argument after the
    # context, eval context or environment (at `value`).
    inner_passes = getattr(inspect.unwrap(function), "jinja_pass_arg", None) is not None
    lead = 1 if passes and not inner_passes else 0
    value = lead + (1 if inner_passes else 0)
    text = name not in _NOT_TEXT

    @functools.wraps(function)
    def limited(*args: Any, **kwargs: Any) -> Any:
        if text:
            check_values(f"the {name} filter", (*(args[1:] if passes else args), *kwargs.values()), limits)
        if bind is not None:
            bound, names = bind(args[lead:], kwargs)
            first = names[value - lead]
            given = bound.get(first)
            arguments(bound, limits)
            if bound.get(first) is not given:  # an iterable the check had to read: pass on what it read
                if len(args) > value:
                    args = (*args[:value], bound[first], *args[value + 1:])
                else:
                    kwargs = {**kwargs, first: bound[first]}
        return function(*args, **kwargs)

    limited.dispatch_limited = True
    return limited


def _binder(function: Callable) -> Callable[[tuple, dict], tuple[dict, list[str]]]:
    """A quick inspect.Signature.bind for filters: their arguments by name (defaults included), and the names of
    the positional parameters."""
    parameters = list(inspect.signature(function).parameters.values())
    positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
    rest = next((p.name for p in parameters if p.kind is p.VAR_POSITIONAL), None)
    named = next((p.name for p in parameters if p.kind is p.VAR_KEYWORD), None)
    if rest:
        defaults[rest] = ()
    if named:
        defaults[named] = {}

    def bind(args: tuple, kwargs: dict) -> tuple[dict, list[str]]:
        bound = dict(defaults)
        bound.update(zip(positional, args))
        if rest:
            bound[rest] = tuple(args[len(positional):])
        for key, value in kwargs.items():
            if key in positional or not named:
                bound[key] = value
            else:
                bound[named] = {**bound[named], key: value}
        return bound, positional

    return bind
