"""The renderer's shortcuts answer exactly what the slow paths they skip would: a dict's
attribute read without the sandbox's AttributeError, template globals as one plain dict,
remembered default-template look-ups, template code run without ``Template.generate`` (errors
still name the template's own line), and a scalar's size without the container walk."""

from __future__ import annotations

from collections import ChainMap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from domain.vocabulary import Channel, NotificationKind
from notifiers.context import sample_context
from notifiers.rendering import NoDefaultTemplate, Renderer, RenderError, TemplateSet
from notifiers.sandbox import MAX_OUTPUT_CHARS, GuardedEnvironment
from notifiers.sizes import measure, text_size
from tests.support.rendering import render_shipped

#: Names a dict answers as attributes (its methods, dunders), context field names, and others.
_NAMES = st.one_of(
    st.sampled_from(sorted(dir(dict))),
    st.sampled_from(["name", "ref", "class", "tracking_url", "eta", "mro", "__mro__", "__name__", "_x"]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
)


def _outcome(env: Any, source: str, context: dict[str, Any]) -> tuple[str, str]:
    try:
        return ("ok", env.from_string(source).render(context))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


@settings(max_examples=200, deadline=None)
@given(
    keys=st.dictionaries(_NAMES, st.one_of(st.none(), st.text(max_size=5), st.integers()), max_size=6),
    attribute=_NAMES,
    autoescape=st.booleans(),
)
def test_a_dict_attribute_reads_as_jinjas_sandbox_reads_it(
    keys: dict[str, Any], attribute: str, autoescape: bool
) -> None:
    guarded = GuardedEnvironment(templates_dir=None, autoescape=autoescape)
    jinja = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=autoescape)
    context = {"d": keys}
    for source in (
        f"{{{{ d.{attribute} }}}}",
        f"{{{{ d.{attribute} is defined }}}}|{{{{ d.{attribute} is callable }}}}",
        f"{{% if d.{attribute} %}}yes{{% endif %}}",
    ):
        assert _outcome(guarded, source, context) == _outcome(jinja, source, context), source


def test_a_templates_globals_are_jinjas_and_stay_its_own() -> None:
    env = GuardedEnvironment(templates_dir=None, autoescape=False)
    before = dict(env.globals)
    own = env.from_string("{{ x }}", globals={"x": "mine"})
    other = env.from_string("{{ x is defined }}")
    assert dict(own.globals) == dict(ChainMap[str, Any]({"x": "mine"}, env.globals))
    assert "lipsum" not in own.globals and "range" in own.globals
    assert own.render() == "mine"
    assert other.render() == "False"
    own.globals["y"] = 1
    assert dict(env.globals) == before, "a template's globals never write through to the environment's"


_KINDS = st.sampled_from(list(NotificationKind))
_CHANNELS = st.sampled_from(list(Channel))
_LOCALES = st.lists(
    st.one_of(st.none(), st.sampled_from(["en", "es", "ES_mx", "es-MX", "fr", "", " ", "x", "zz-top"])),
    max_size=3,
)


@settings(max_examples=100, deadline=None)
@given(queries=st.lists(st.tuples(_KINDS, _CHANNELS, _LOCALES), min_size=1, max_size=8))
def test_a_remembered_default_is_what_a_fresh_look_up_finds(
    queries: list[tuple[NotificationKind, Channel, list[str | None]]],
) -> None:
    remembering = Renderer()
    for kind, channel, locales in queries:
        for _ in range(2):  # the second answer comes from memory
            try:
                got: Any = remembering.resolve_default(kind, channel, locales)
            except NoDefaultTemplate as exc:
                got = str(exc)
            try:
                want: Any = Renderer().resolve_default(kind, channel, locales)
            except NoDefaultTemplate as exc:
                want = str(exc)
            assert got == want, (kind, channel, locales)


def test_odd_locale_values_are_resolved_not_remembered() -> None:
    renderer = Renderer()
    odd: list[Any] = [["es"], 7]
    assert renderer.resolve_default("shipped", "email", odd)[0] == "en"
    assert renderer.resolve_default("shipped", "email", ["es"])[0] == "es"


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("Hi\n\n{{ 1 // 0 }}", 3, "integer division or modulo by zero"),
        (
            "a\n{% for p in [1] %}\n{{ order.nope.deeper }}\n{% endfor %}",
            3,
            "'dict object' has no attribute 'nope'",
        ),
        (
            "{% extends 'email/en/_layout.html' %}\n{% block content %}\n\n{{ customer.name.upper(1) }}"
            "{% endblock %}",
            4,
            "str.upper() takes no arguments (1 given)",
        ),
    ],
)
def test_a_render_error_names_the_templates_own_line(source: str, line: int, message: str) -> None:
    with pytest.raises(RenderError) as info:
        render_shipped(Renderer(), "email", TemplateSet(subject="s", text="t", html=source))
    assert (info.value.field, info.value.line, info.value.message) == ("html", line, message)


def test_the_default_emails_render_in_every_shipped_locale() -> None:
    renderer = Renderer()
    for locale in ("en", "es"):
        for kind in ("shipped", "out_for_delivery"):
            out = renderer.render(kind, "email", sample_context(kind, locale), locales=[locale])
            assert out.locale == locale and out.subject and out.text and out.html
            assert out.html.startswith("<!DOCTYPE html>") and f'<html lang="{locale}">' in out.html


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**5000), max_value=2**5000),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
    limit=st.sampled_from([0, 3, 100, MAX_OUTPUT_CHARS]),
)
def test_a_scalars_size_is_what_the_walk_measures(value: Any, limit: int) -> None:
    assert text_size(value, limit) == measure(value, limit).size
