"""What a template may make: values too large are refused before they are made, output is capped, time is
limited, and ordinary templates give exactly what Jinja2's own sandbox gives.

"Before they are made" is measured: Python's allocator is traced while each hostile template runs, and
its peak stays far below the size the template asked for (hundreds of megabytes to gigabytes).
"""

from __future__ import annotations

import dataclasses
import tracemalloc

import jinja2
import pytest
from jinja2.sandbox import SandboxedEnvironment

from dispatch.errors import TemplateError
from dispatch.merge import limits, sandbox
from dispatch.merge.sandbox import Source
from tests.merge_campaign import LETTER, assert_clear_error, dispatch, sample_campaign

HOSTILE = [
    ('"x".ljust(1500000000)', "ljust(1500000000)"),
    ('"x".rjust(1500000000)', "rjust(1500000000)"),
    ('"x".center(1500000000)', "center(1500000000)"),
    ('"7".zfill(1500000000)', "zfill(1500000000)"),
    ('"\\t".expandtabs(1500000000)', "expandtabs(1500000000)"),
    ('"%1500000000s" % "x"', "the format '%1500000000s'"),
    ('"%*s" % (1500000000, "x")', "the format '%*s'"),
    ('"%.1500000000f" % 1.0', "the format '%.1500000000f'"),
    ('"{:1500000000}".format("x")', "the format field '1500000000'"),
    ('"{:{w}}".format("x", w=1500000000)', "the format field '1500000000'"),
    ('"{a:>1500000000}".format_map({"a": 1})', "the format field '>1500000000'"),
    ('"x" | center(1500000000)', "center(1500000000)"),
    ('"%1500000000s" | format("x")', "the format '%1500000000s'"),
    ('"a\\nb" | indent(1500000000)', "indent(1500000000)"),
    ('"x" * 10**9', "this repetition"),
    ("[1] * 10**9", "this repetition"),
    ('10**9 * "x"', "this repetition"),
    ('("x" * 1000000).replace("x", "0123456789")', "replace('x', '0123456789')"),
    ('("x" * 1000000).join(["a", "b", "c"])', "join(list)"),
    ('["x" * 1000000, "y" * 1000000, "z"] | join', "the join filter"),
    ('"x" | attr("ljust")(1500000000)', "ljust(1500000000)"),
    ("lipsum(10**6)", "lipsum(1000000)"),
    ('range(10) | batch(10**9, "x") | list', "batch(1000000000)"),
    ("range(10) | slice(10**9) | list", "slice(1000000000)"),
    ("[[[[1]]]] | tojson(indent=10**9)", "this tojson"),
    ('"ab ab ab" | wordwrap(1, wrapstring="x" * 1000000)', "this wordwrap"),
    ('"aaaa".translate({97: "x" * 1000000})', "translate(dict)"),
    ('("x" * 1500000) + ("y" * 1500000)', "this addition"),
    ('("x" * 1500000) ~ ("y" * 1500000)', "joining these texts with ~"),
    ('["x" * 2000000] * 1000', "printing this value"),
    ("((2 ** 64) ** 64) ** 64", "this power"),
]

BUILT_UP = [  # values that grow step by step: refused at the step that would pass the limit
    ('{% set ns = namespace(s="x") %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}',
     "joining these texts with ~"),
    ('{% set l = ["x"] %}{% for i in range(64) %}{{ l.extend(l) }}{% endfor %}', "extend()"),
    ('{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}',
     "printing this value"),
    ('{% set ns = namespace(x=2) %}{% for i in range(64) %}{% set ns.x = ns.x ** 64 %}{% endfor %}', "this power"),
    ('{% macro m() %}{% for a in range(100000) %}{% for b in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}'
     "{% endmacro %}{{ m() | length }}", "this block of text"),
    ("{% set x %}{% for a in range(100000) %}{% for b in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}"
     "{% endset %}{{ x | length }}", "this block of text"),
    ('{% set a = range(100000) | list %}{{ ([a] * 100000) | sum(start=[]) | length }}', "this sum"),
]


# The size limits of a letter with time enough for a machine under load: these tests are about size, not time.
SIZES_ONLY = dataclasses.replace(limits.LETTER, seconds=300.0)


def evaluate(tmp_path, source: str, *, bounds=SIZES_ONLY, autoescape=True, name="t.j2"):
    """Merge templates/<name> (source on its line 2) as a letter for recipient 'NA'; its output or its TemplateError."""
    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)
    (templates / name).write_text("{# line 1 #}\n" + source + "\n", encoding="utf-8")
    env = sandbox.environment(bounds, templates=templates, autoescape=autoescape)
    shown = Source(templates, f"templates/{name}")
    template = sandbox.load(env, name, shown)
    try:
        return sandbox.generate(template, {"state": "Namibia"})[0]
    except Exception as exc:
        raise sandbox.template_error(exc, shown, bounds, who="recipient 'NA'") from None


@pytest.mark.parametrize("autoescape", [True, False], ids=["html", "text"])
@pytest.mark.parametrize("expression, what", HOSTILE, ids=[e for e, _ in HOSTILE])
def test_a_value_too_large_is_refused_before_it_is_made(tmp_path, expression, what, autoescape):
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError) as caught:
            evaluate(tmp_path, "{{ " + expression + " }}", autoescape=autoescape)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (f"templates/t.j2:2: not allowed in a template: {what} would make more text than "
                                 "a letter can hold (recipient 'NA')")
    assert "2,000,000 characters" in caught.value.hint
    assert peak < 40_000_000, f"{peak:,} bytes allocated"


@pytest.mark.parametrize("source, what", BUILT_UP, ids=[w for _, w in BUILT_UP])
def test_a_value_built_up_step_by_step_is_refused_at_the_limit(tmp_path, source, what):
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError) as caught:
            evaluate(tmp_path, source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (f"templates/t.j2:2: not allowed in a template: {what} would make more text than "
                                 "a letter can hold (recipient 'NA')")
    assert peak < 80_000_000, f"{peak:,} bytes allocated"


def test_an_imported_template_is_built_within_the_limit(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "runaway.j2").write_text(
        "{% for a in range(100000) %}\n{% for b in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}\n")
    with pytest.raises(TemplateError) as caught:
        evaluate(tmp_path, '{% import "runaway.j2" as r %}{{ r }}')
    assert str(caught.value) == ("templates/runaway.j2:2: not allowed in a template: this block of text would make "
                                 "more text than a letter can hold (recipient 'NA')")


def test_output_is_capped_at_the_line_that_writes_it(tmp_path):
    with pytest.raises(TemplateError) as caught:
        evaluate(tmp_path, "{% for a in range(100000) %}\n{% for b in range(100000) %}\nxxxxxxxxxx\n{% endfor %}{% endfor %}")
    assert str(caught.value) == "templates/t.j2:3: the output grows past 2,000,000 characters"


@pytest.mark.parametrize("source, line", [
    ("{% for a in range(100000) %}\n{% for b in range(100000) %}{% endfor %}{% endfor %}", 3),
    ("{% macro spin() %}\n{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}\n"
     "{% endmacro %}\n{{ spin() }}", 3),
    ("{% set l = range(100000) | list %}\n{% for a in l %}{% for b in l %}{% endfor %}{% endfor %}", 3),
])
def test_a_template_that_runs_too_long_is_stopped_at_its_line(tmp_path, source, line):
    quick = dataclasses.replace(limits.LETTER, seconds=1.0)  # the real budget is 10 s; the rule is the same
    with pytest.raises(TemplateError) as caught:
        evaluate(tmp_path, source, bounds=quick)
    assert str(caught.value) == f"templates/t.j2:{line}: the template ran for more than 1 s (recipient 'NA')"
    assert caught.value.hint


ORDINARY = [
    '{{ "Namibia".ljust(10) }}|{{ "7".zfill(3) }}|{{ "a\\tb".expandtabs(4) }}|{{ "x".center(5, "*") }}',
    '{{ "%-10s|%5.2f" % ("a", 3.14159) }}|{{ "%(x)s" % {"x": 1} }}|{{ "%*d" % (4, 7) }}',
    '{{ "{:>8}|{:.3f}|{name}".format("a", 2.5, name=state) }}',
    '{{ "-".join(["a", "b"]) }}|{{ ["a", "b"] | join(", ") }}|{{ [{"n": 1}, {"n": 2}] | join("+", attribute="n") }}',
    '{{ "a b a" | replace("a", "x") }}|{{ "a b a" | replace("a", "x", 1) }}|{{ "ab".replace("b", "bb") }}',
    '{{ "one two three four" | wordwrap(9) }}|{{ "line\\nnext" | indent(2, true) }}|{{ "x" | center(9) }}',
    '{{ "%s and %s" | format("a", "b") }}|{{ range(7) | batch(3, 0) | list }}|{{ range(7) | slice(3) | list }}',
    '{{ {"a": [1, 2]} | tojson(indent=2) }}|{{ [[1], [2]] | sum(start=[]) }}|{{ range(4) | sum }}',
    '{{ "see https://example.org" | urlize }}|{{ {"a": 1} | pprint }}|{{ "x" * 3 }}|{{ [0] * 3 }}|{{ "a" + "b" }}',
    '{% set ns = namespace(n=0, s="") %}{% for i in range(5) %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}'
    '{% endfor %}{{ ns.n }}|{{ ns.s }}|{{ 2 ** 10 }}|{{ 7 * 7 }}',
    '{% set l = [] %}{% for i in range(3) %}{{ l.append(i) or "" }}{% endfor %}{{ l }}|{{ lipsum(1, false, 5, 10) | length > 0 }}',
    '{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(state) }}|{% set b %}block {{ state }}{% endset %}{{ b }}'
    '|{% filter upper %}{{ state }}{% endfilter %}|{{ "<b>" ~ state }}|{{ "%s" % "<i>" }}',
    '{{ ("<b>{}</b>" | safe).format("<i>") }}|{{ ("<b>%s</b>" | safe) % "<i>" }}|{{ ("<p>" | safe).join(["<a>", "b"]) }}'
    '|{{ ("<b>{x}</b>" | safe).format_map({"x": "<i>"}) }}|{{ ("a" | safe).ljust(3, "*") }}',
    '{{ "Côte d’Ivoire" | title }}|{{ "a.b" | urlencode }}|{{ "  x " | trim }}|{{ "<p>x</p>" | striptags }}'
    '|{{ 12345678 | filesizeformat }}|{{ [3, 1, 2] | sort | first }}|{{ "abc" | reverse }}',
]


@pytest.mark.parametrize("autoescape", [True, False], ids=["html", "text"])
@pytest.mark.parametrize("source", ORDINARY)
def test_ordinary_templates_give_what_jinja2_gives(tmp_path, source, autoescape):
    reference = SandboxedEnvironment(autoescape=autoescape, undefined=jinja2.StrictUndefined, trim_blocks=True,
                                     lstrip_blocks=True)
    expected = "{# line 1 #}\n" + source + "\n"
    expected = reference.from_string(expected).render(state="Namibia")  # (lipsum is random: only its length is printed)
    assert evaluate(tmp_path, source, autoescape=autoescape) == expected


def test_python_internals_stay_out_of_reach(tmp_path):
    with pytest.raises(TemplateError) as caught:
        evaluate(tmp_path, "{{ state.__class__.__mro__ }}")
    assert str(caught.value) == ("templates/t.j2:2: not allowed in a template: access to attribute '__class__' of "
                                 "'str' object is unsafe. (recipient 'NA')")


def test_an_error_python_raises_in_a_template_is_a_template_error_at_its_line(tmp_path):
    with pytest.raises(TemplateError) as caught:
        evaluate(tmp_path, '{{ "abc".index("z") }}')
    assert str(caught.value) == "templates/t.j2:2: ValueError: substring not found (recipient 'NA')"
    assert caught.value.hint


def test_a_letter_asking_for_a_huge_width_stops_render_at_its_line(tmp_path):
    campaign = sample_campaign(tmp_path, only=["AF"])
    letter = campaign / LETTER
    line = letter.read_text(encoding="utf-8").count("\n") + 1
    letter.write_text(letter.read_text(encoding="utf-8") + "{{ state.ljust(1500000000) }}\n", encoding="utf-8")
    result = dispatch(campaign, "render")
    assert_clear_error(result, f"{LETTER}:{line}: not allowed in a template: ljust(1500000000) would make more text "
                               "than a letter can hold (recipient 'AF')")
    assert not (campaign / "out").exists()
