"""Template memory bombs: every string- or list-building operation of the sandbox is capped
*before* it builds anything, so a bomb fails fast with the project's template error, at save
time (validation) and at render time alike, and ordinary templates keep working."""

from __future__ import annotations

import resource
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError

from notifiers.context import sample_context
from notifiers.rendering import MAX_OUTPUT_CHARS, Renderer, RenderError, TemplateSet, TemplateValidationError
from notifiers.sandbox import GuardedEnvironment, RenderTimeout, TemplateTooLarge
from tests.support.rendering import render_shipped

#: (name, template): each would build far more than the 100 KB a template may produce.
BOMBS: list[tuple[str, str]] = [
    ("join of a range with a huge separator", "{{ range(99999)|join('x' * 100000) }}"),
    ("join of a list repeated by *", "{{ (['x' * 100000] * 100000)|join }}"),
    ("join of a mapped range", "{{ range(100000)|map('string')|join('x' * 1000) }}"),
    ("str.join of a generator", "{{ 'x'.join(range(100000)|map('string')) }}"),
    ("replace doubling", "{% set x = 'x' * 100000 %}{{ x|replace('x', x) }}"),
    ("replace with a count", "{{ 'abc'|replace('', 'x' * 100000, 99999) }}"),
    ("str.replace", "{{ ('x' * 100000).replace('x', 'yy') }}"),
    (
        "replace doubling in a loop",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s|replace('a', 'aa')|replace('b', 'bb') %}{% endfor %}{{ ns.s|length }}",
    ),
    (
        "~ chains of set variables",
        "{% set x = 'a' * 1000 %}{% set y = x~x~x~x~x~x~x~x~x~x %}{% set z = y~y~y~y~y~y~y~y~y~y~y %}{{ z|length }}",
    ),
    (
        "~ doubling in a loop",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        "{{ ns.s|length }}",
    ),
    ("+ of two big strings", "{{ ('x' * 60000) + ('y' * 60000) }}"),
    ("% with a huge width", "{{ '%99999999d' % 1 }}"),
    ("% with a * width", "{{ '%*d' % (100000, 1) ~ '%*d' % (100000, 1) }}"),
    ("% of big strings", "{{ '%s%s' % ('x' * 100000, 'y' * 100000) }}"),
    ("|format with a huge width", "{{ '%99999999d'|format(1) }}"),
    ("|format of big strings", "{{ '%s%s'|format('x' * 60000, 'y' * 60000) }}"),
    ("str.format width", "{{ '{0:>99999999}'.format(1) }}"),
    ("str.format nested width", "{{ '{0:{1}}'.format('x', '99999999') }}"),
    ("str.format many fields", "{{ '{0:>100000}{0:>100000}'.format(1) }}"),
    ("str.format precision", "{{ '{0:.99999999f}'.format(1.5) }}"),
    ("|center huge", "{{ 'x'|center(99999999) }}"),
    ("|center twice", "{{ 'x'|center(100000) ~ 'y'|center(100000) }}"),
    ("str.ljust/rjust", "{{ 'x'.ljust(100000) ~ 'y'.rjust(100000) }}"),
    ("str.zfill", "{{ '1'.zfill(100000) ~ '2'.zfill(100000) }}"),
    ("str.expandtabs", "{{ ('\\t' * 1000).expandtabs(1000) }}"),
    ("str.translate", "{{ ('x' * 1000).translate({120: 'y' * 100000}) }}"),
    ("|indent huge", "{{ 'a'|indent(99999999) }}"),
    ("|indent many lines", "{{ ('a\\n' * 50000)|indent(99999) }}"),
    ("|wordwrap", "{{ ('a ' * 50000)|wordwrap(1, wrapstring='x' * 1000) }}"),
    ("|urlencode", "{{ ('&' * 100000)|urlencode }}"),
    ("|tojson indent", "{{ (range(1000)|list)|tojson(indent=100000) }}"),
    ("|pprint", "{{ ['x' * 60000, 'y' * 60000]|pprint }}"),
    ("|batch fill", "{{ range(100000)|batch(100000, fill_with='x' * 100000)|list }}"),
    ("|list of a big list repeated", "{{ (range(100000)|list) * 100000 }}"),
    ("|sum of lists", "{{ ([[1] * 1000] * 1000)|sum(start=[]) }}"),
    ("list * printed", "{{ ['x' * 100000] * 100000 }}"),
    (
        "nested loops",
        "{% for i in range(1000) %}{% for j in range(1000) %}{{ i }}{{ j }}{% endfor %}{% endfor %}",
    ),
    (
        "nested loops in a set block",
        "{% set s %}{% for i in range(1000) %}{% for j in range(1000) %}xxxxxxxxxx{% endfor %}{% endfor %}{% endset %}"
        "{{ s|length }}",
    ),
    ("filter block", "{% filter upper %}{% for i in range(100000) %}abcdefghij{% endfor %}{% endfilter %}"),
    (
        "doubling macro",
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% else %}xxxxxxxxxxxxxxxx{% endif %}{% endmacro %}"
        "{{ m(30)|length }}",
    ),
    ("recursive macro", "{% macro m(n) %}{{ m(n + 1) }}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}"),
    ("recursive loop", "{% for x in [1] recursive %}{{ loop(range(100000)) }}{% endfor %}"),
    (
        "work budget: a big string per iteration",
        "{% for i in range(100000) %}{% set _ = 'x' * 100000 %}{% endfor %}",
    ),
    (
        "work budget: a list of big strings",
        "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + ['x' * 100000] %}{% endfor %}"
        "{{ ns.l|length }}",
    ),
    ("dict.fromkeys printed", "{{ dict.fromkeys(range(100000), 'x' * 100000) }}"),
    ("slices", "{{ ('x' * 100000)[::-1] ~ ('x' * 100000)[::-1] }}"),
    ("bytes", "{{ ('x' * 100000).encode('utf-8').hex() }}"),
]

#: How a cap refuses: before building (a sandbox refusal); the whole output, while it streams;
#: unbounded recursion. Never "took longer" (the clock) and never MemoryError.
REFUSAL = ("too large: ", "not allowed: ", "too deeply nested")
STREAMED = {"nested loops": "output is larger than 100 KB"}


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def _maxrss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux


@pytest.mark.parametrize("part", ["text", "html"])
@pytest.mark.parametrize(("name", "source"), BOMBS, ids=[b[0] for b in BOMBS])
def test_a_bomb_is_refused_at_save_without_building_it(
    renderer: Renderer, name: str, source: str, part: str
) -> None:
    before = _maxrss_mb()
    tset = TemplateSet(
        subject="s", text=source if part == "text" else "t", html=source if part == "html" else None
    )
    with pytest.raises(TemplateValidationError) as info:
        renderer.validate("shipped", "email", tset)
    assert info.value.errors
    for error in info.value.errors:  # one per sample context
        assert error["field"] == part
        assert error["message"].startswith(REFUSAL) or error["message"].startswith(STREAMED.get(name, "?")), (
            error
        )
    assert _maxrss_mb() - before < 64, "a coarse bound: nothing near the bomb's size was allocated"


@pytest.mark.parametrize(("name", "source"), BOMBS[:12], ids=[b[0] for b in BOMBS[:12]])
def test_a_bomb_fails_at_render_with_a_clear_message(renderer: Renderer, name: str, source: str) -> None:
    with pytest.raises(RenderError) as info:
        render_shipped(renderer, "sms", TemplateSet(subject=None, text=source, html=None))
    assert info.value.message.startswith(("too large: ", "not allowed: ")), info.value.message
    assert isinstance(info.value.__cause__, SecurityError)


def test_a_conditional_bomb_passes_validation_but_fails_fast_when_the_branch_is_taken(
    renderer: Renderer,
) -> None:
    source = (
        "{% if order.ref == '7777' %}{{ range(99999)|join('x' * 100000) }}{% endif %}Order {{ order.ref }}"
    )
    tset = TemplateSet(subject=None, text=source, html=None)
    renderer.validate("shipped", "sms", tset)  # the sample order is not 7777
    context = sample_context("shipped")
    context["order"] = {"ref": "7777"}
    with pytest.raises(RenderError) as info:
        renderer.render("shipped", "sms", context, locales=["en"], override=tset)
    assert info.value.message == "too large: join would produce more than 100 KB of text"
    assert info.value.line == 1


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ ['a', 'b', 'c']|join(', ') }}", "a, b, c"),
        ("{{ range(3)|map('string')|join('-') }}", "0-1-2"),
        ("{{ ', '.join(['x', 'y']) }}", "x, y"),
        ("{{ 'ab'|replace('b', 'cc') }} {{ 'aaa'|replace('a', 'b', 2) }}", "acc bba"),
        ("|{{ 'x'|center(5) }}|", "|  x  |"),
        ("|{{ 'a\nb'|indent(2, first=true) }}", "|  a\n  b"),
        ("{{ 'aaa bbb'|wordwrap(3) }}", "aaa\nbbb"),
        ("{{ 'hello world'|truncate(5, true, '..', 0) }}", "hel.."),
        (
            "{{ ('x' * 100000)|truncate(100000, end='y' * 100000)|length }}",
            "100000",
        ),  # never longer than its input
        ("{{ '%05.1f|%-4s|%(x)s'|format(x=1) if false else '%05.1f|%-4s|' % (2.5, 'ab') }}", "002.5|ab  |"),
        ("|{{ '{0:>6}|{1:.2f}|{2:,}'.format('ab', 3.14159, 12345) }}", "|    ab|3.14|12,345"),
        ("{{ order.ref ~ '/' ~ 42 ~ '/' ~ 150000 }}", "1042/42/150000"),
        (
            "{{ [1, 2] + [3] }} {{ 'a' + 'b' }} {{ 2 + 3 }} {{ 7 % 3 }} {{ 'ab' * 2 }}",
            "[1, 2, 3] ab 5 1 abab",
        ),
        ("{{ [[1], [2, 3]]|sum(start=[]) }} {{ [1, 2, 3]|sum }}", "[1, 2, 3] 6"),
        ("{{ 'abc'|list }} {{ range(3)|list }}", "['a', 'b', 'c'] [0, 1, 2]"),
        ("{{ {'a': 1}|tojson }}", '{"a": 1}'),
        ("{{ 'a b'|urlencode }}", "a%20b"),
        ("{% set s %}{% for i in range(3) %}{{ i }}{% endfor %}{% endset %}{{ s }}", "012"),
        ("{% macro m(n) %}{% if n %}{{ n }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(3) }}", "321"),
        (
            "{% for x in [[1, [2]], 3] recursive %}{% if x is iterable %}{{ loop(x) }}{% else %}{{ x }}{% endif %}"
            "{% endfor %}",
            "123",
        ),
        ("{{ ('x' * 50000)|length }} {{ 'x' * 100000 == 'x' * 100000 }}", "50000 True"),
        ("{{ 'a\tb'.expandtabs(4) }}|{{ '7'.zfill(3) }}|{{ 'ab'.ljust(3) }}|", "a   b|007|ab |"),
    ],
)
def test_ordinary_templates_still_render(renderer: Renderer, source: str, expected: str) -> None:
    out = render_shipped(renderer, "email", TemplateSet(subject="s", text=source, html=None))
    assert out.text == expected


def test_html_concatenation_and_join_still_escape(renderer: Renderer) -> None:
    context = sample_context("shipped")
    context["customer"] = {"name": "<b>", "first_name": "<i>"}
    html = "{{ customer.name ~ '&' }}|{{ [customer.name, '<']|join(customer.first_name) }}|{{ '<%s>' % customer.name }}"
    out = render_shipped(renderer, "email", TemplateSet(subject="s", text="t", html=html), context)
    assert out.html == "&lt;b&gt;&amp;|&lt;b&gt;&lt;i&gt;&lt;|&lt;&lt;b&gt;&gt;"


def test_output_of_exactly_the_limit_is_allowed(renderer: Renderer) -> None:
    out = render_shipped(
        renderer, "email", TemplateSet(subject="s", text=f"{{{{ 'x' * {MAX_OUTPUT_CHARS} }}}}", html=None)
    )
    assert len(out.text) == MAX_OUTPUT_CHARS


# -- the class, by property -----------------------------------------------------------------------
_SIZES = st.sampled_from([0, 1, 7, 100, 1000, 30_000, 60_000, 100_000, 102_400, 150_000])
_WIDTHS = st.integers(min_value=1, max_value=100_000)


def _expressions() -> st.SearchStrategy[str]:
    leaf = st.one_of(
        _SIZES.map(lambda n: f"('ab\\t\\n ' * {n})"),
        st.just("order.ref"),
        st.just("customer.name"),
        _SIZES.map(lambda n: f"range({min(n, 100_000)})"),
    )

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        pair = st.tuples(inner, inner)
        return st.one_of(
            pair.map(lambda p: f"({p[0]} ~ {p[1]})"),
            pair.map(lambda p: f"({p[0]}|string + {p[1]}|string)"),
            st.tuples(inner, _SIZES).map(lambda p: f"({p[0]}|string * {p[1]})"),
            st.tuples(inner, _SIZES).map(lambda p: f"([{p[0]}] * {p[1]})"),
            pair.map(lambda p: f"({p[0]}|string|replace('a', {p[1]}|string))"),
            st.tuples(inner, inner, _SIZES).map(
                lambda p: f"({p[0]}|string|replace(' ', {p[1]}|string, {p[2]}))"
            ),
            st.tuples(inner, _WIDTHS).map(lambda p: f"({p[0]}|string|center({p[1]}))"),
            st.tuples(inner, _WIDTHS).map(lambda p: f"({p[0]}|string|indent({p[1]}, true, true))"),
            st.tuples(inner, _WIDTHS, inner).map(
                lambda p: f"({p[0]}|string|wordwrap({p[1]}, wrapstring={p[2]}|string))"
            ),
            st.tuples(inner, inner).map(lambda p: f"({p[0]}|string|truncate(10**5, end={p[1]}|string))"),
            pair.map(lambda p: f"({p[0]}|join({p[1]}|string))"),
            pair.map(lambda p: f"(({p[0]}|string).join({p[1]}|map('string')))"),
            pair.map(lambda p: f"('%s|%s' % ({p[0]}, {p[1]}))"),
            st.tuples(inner, _WIDTHS).map(lambda p: f"('%*s'|format({p[1]}, {p[0]}))"),
            st.tuples(inner, _WIDTHS).map(lambda p: f"('{{0:>{p[1]}}}{{0}}'.format({p[0]}))"),
            st.tuples(inner, _WIDTHS).map(lambda p: f"(({p[0]}|string).ljust({p[1]}))"),
            st.tuples(inner, _WIDTHS).map(lambda p: f"(({p[0]}|string).zfill({p[1]}))"),
            st.tuples(inner, _WIDTHS).map(lambda p: f"(({p[0]}|string).expandtabs({p[1]}))"),
            inner.map(lambda e: f"({e}|urlencode)"),
            st.tuples(inner, _WIDTHS).map(lambda p: f"([{p[0]}, [{p[0]}]]|tojson(indent={p[1]}))"),
            inner.map(lambda e: f"({e}|list)"),
            inner.map(lambda e: f"([{e}|list, [1]]|sum(start=[]))"),
            inner.map(lambda e: f"({e}|batch(3)|list)"),
            inner.map(lambda e: f"({e}|pprint)"),
        )

    return st.recursive(leaf, extend, max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expression=_expressions(),
    wrap=st.sampled_from(
        [
            "{{ § }}",
            "{% set v = § %}{{ v|length }}",
            "{% for i in range(3) %}{{ § }}{% endfor %}",
            "{% macro m() %}{{ § }}{% endmacro %}{{ m() ~ m() }}",
        ]
    ),
    html=st.booleans(),
)
def test_any_composition_renders_within_the_limit_or_fails_with_the_template_error(
    renderer: Renderer, expression: str, wrap: str, html: bool
) -> None:
    source = wrap.replace("§", expression)
    tset = TemplateSet(subject="s", text="t" if html else source, html=source if html else None)
    before = _maxrss_mb()
    try:
        out = renderer.render_set("email", tset, sample_context("shipped"), locale="en")
    except RenderError as exc:
        cause: Any = exc.__cause__
        # refused by a cap (or the final output check, no cause), or an ordinary error of the
        # generated code (a list formatted with a width ...); never MemoryError, never the clock
        assert cause is None or isinstance(cause, SecurityError | TypeError | ValueError), repr(cause)
        assert not isinstance(cause, RenderTimeout | MemoryError | OverflowError)
    else:
        assert len(out.html if html else out.text) <= MAX_OUTPUT_CHARS  # type: ignore[arg-type]
    assert _maxrss_mb() - before < 64


def test_too_large_is_the_sandbox_refusal() -> None:
    assert issubclass(TemplateTooLarge, SecurityError)


@pytest.mark.parametrize(
    ("name", "join"),
    [
        ("str.join", "{{ 'x'.join(numbers) }}"),
        ("the join filter", "{{ numbers|join('x') }}"),
    ],
)
def test_a_join_of_a_generator_stops_pulling_once_its_text_passes_the_cap(
    renderer: Renderer, name: str, join: str
) -> None:
    """A join is refused as soon as what it would print passes the cap, not after its generator
    has run to the end (to the 100,000-item cap, seconds of a worker's CPU under load)."""
    pulled = 0

    def numbers() -> Any:
        nonlocal pulled
        for n in range(10**9):
            pulled += 1
            yield str(n)

    env = GuardedEnvironment(templates_dir=renderer.templates_dir, autoescape=False)
    with pytest.raises(TemplateTooLarge, match="join would produce more than 100 KB of text"):
        env.from_string(join).render(numbers=numbers())
    assert pulled <= MAX_OUTPUT_CHARS // 2 + 1, f"{name} pulled {pulled:,} items"
