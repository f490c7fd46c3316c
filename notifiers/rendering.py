"""Sandboxed rendering of notification templates (defaults and merchant overrides).

Two environments: HTML bodies are autoescaped, subjects/text/SMS are not (they are not HTML).
Both are :class:`notifiers.sandbox.GuardedEnvironment` (ImmutableSandboxedEnvironment,
StrictUndefined, render budget, size caps). A template that would build too much text fails fast
with a :class:`RenderError` whose message starts with ``too large:`` — at save time (validation
renders it) and at send time alike; nothing big is built first.

Default templates live in the top-level ``templates/`` folder, see ``templates/README.md``::

    templates/<channel>/<locale>/<kind>.subject.txt   (email)
    templates/<channel>/<locale>/<kind>.text.txt      (email and sms)
    templates/<channel>/<locale>/<kind>.html          (email)
    templates/email/_base.html, templates/email/<locale>/_layout.html   (shared HTML layout)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import Template, TemplateSyntaxError, meta, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context

from domain.vocabulary import MERCHANT_ALERTS, Channel, NotificationKind

from .context import context_names, format_date, object_fields, sample_context, sparse_context
from .sandbox import (
    MAX_OUTPUT_CHARS,
    MAX_SOURCE_CHARS,
    RENDER_TIMEOUT_S,
    GuardedEnvironment,
    RenderTimeout,
    TemplateTooLarge,
    render_budget,
)
from .segments import sms_segments

DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
FALLBACK_LOCALE = "en"
MAX_SMS_SEGMENTS = 10

# part name -> file suffix
_PART_FILES = {"subject": ".subject.txt", "text": ".text.txt", "html": ".html"}
_FIELDS_ORDER = ("subject", "text", "html")
_TEMPLATE_FILENAME = "<template>"

# Attribute names refused statically (the sandbox refuses them at run time too, but only on the
# branch actually rendered): anything private/dunder plus Python's introspection handles.
_UNSAFE_ATTRS = frozenset(
    {
        "mro",
        "func_globals",
        "func_code",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "tb_frame",
        "tb_next",
        "co_code",
        "im_func",
        "im_self",
        "im_class",
    }
)


@dataclass(frozen=True)
class TemplateSet:
    """One kind/channel/locale's template sources. SMS: ``subject`` and ``html`` are None."""

    subject: str | None
    text: str
    html: str | None


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    text: str
    html: str | None
    locale: str
    segments: int | None = None  # SMS only
    encoding: str | None = None  # SMS only: "GSM-7" or "UCS-2"


class RenderError(Exception):
    """A template failed at render time (undefined name, sandbox violation, timeout, too big...)."""

    def __init__(self, field: str, line: int | None, message: str) -> None:
        super().__init__(f"{field}{f' line {line}' if line else ''}: {message}")
        self.field = field
        self.line = line
        self.message = message

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "line": self.line, "message": self.message}


def _describe(error: Mapping[str, Any]) -> str:
    line = f" line {error['line']}" if error.get("line") else ""
    return f"{error['field']}{line}: {error['message']}"


class TemplateValidationError(ValueError):
    """A template is unfit to save. ``errors``: ``[{"field", "line", "message"}]`` (line may be None)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(_describe(e) for e in errors))
        self.errors = errors


class NoDefaultTemplate(LookupError):
    """No default template for this kind/channel in any acceptable locale."""


def candidate_locales(locales: Sequence[str | None]) -> list[str]:
    """Locale search order: each given locale, then its language (``es-MX`` → ``es-mx``, ``es``),
    then ``en``. Normalized lower-case with ``-``; blanks and duplicates dropped."""
    out: list[str] = []
    for raw in [*locales, FALLBACK_LOCALE]:
        if not raw or not str(raw).strip():
            continue
        loc = str(raw).strip().replace("_", "-").lower()
        for cand in (loc, loc.split("-", 1)[0]):
            if cand not in out and re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{2,8})*", cand):
                out.append(cand)
    return out


@pass_context
def _date_filter(context: Context, value: Any, locale: str | None = None) -> str:
    return format_date(value, locale or context.get("locale") or FALLBACK_LOCALE)


def _template_line(tb: TracebackType | None) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_BLANK_LINES = re.compile(r"\n{3,}")


def _clean_text(text: str) -> str:
    lines = map(str.rstrip, text.replace("\r\n", "\n").split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _clean_subject(text: str) -> str:
    return " ".join(text.split())


class Renderer:
    """Renders default or merchant templates; validates merchant templates before they are saved."""

    def __init__(self, templates_dir: Path | None = None, *, timeout_s: float = RENDER_TIMEOUT_S) -> None:
        self.templates_dir = Path(templates_dir) if templates_dir is not None else DEFAULT_TEMPLATES_DIR
        self.timeout_s = timeout_s
        self._envs = {
            True: GuardedEnvironment(templates_dir=self.templates_dir, autoescape=True),
            False: GuardedEnvironment(templates_dir=self.templates_dir, autoescape=False),
        }
        for env in self._envs.values():
            env.add_filter("date", _date_filter)
        self._compiled: dict[tuple[bool, str], Template] = {}
        self._defaults: dict[tuple[str, str, str], TemplateSet | None] = {}
        # (kind, channel, *locales) -> what resolve_default found (the files are read once anyway)
        self._resolved: dict[tuple[Any, ...], tuple[str, TemplateSet]] = {}

    # -- defaults ------------------------------------------------------------------------------
    def _default_or_none(self, kind: str, channel: str, locale: str) -> TemplateSet | None:
        key = (kind, channel, locale)
        if key not in self._defaults:
            folder = self.templates_dir / channel / locale
            parts: dict[str, str | None] = {}
            for part, suffix in _PART_FILES.items():
                path = folder / f"{kind}{suffix}"
                parts[part] = path.read_text(encoding="utf-8") if path.is_file() else None
            text = parts["text"]
            if text is None or (channel == Channel.EMAIL and parts["subject"] is None):
                self._defaults[key] = None
            else:
                html = parts["html"] if channel == Channel.EMAIL else None
                subject = parts["subject"] if channel == Channel.EMAIL else None
                self._defaults[key] = TemplateSet(subject=subject, text=text, html=html)
        return self._defaults[key]

    def default_set(self, kind: NotificationKind | str, channel: Channel | str, locale: str) -> TemplateSet:
        """The shipped default for exactly this locale (no fallback); :class:`NoDefaultTemplate` if none."""
        kind, channel = NotificationKind(kind), Channel(channel)
        tset = self._default_or_none(kind.value, channel.value, locale.replace("_", "-").lower())
        if tset is None:
            raise NoDefaultTemplate(f"no default {channel.value} template for {kind.value} in {locale!r}")
        return tset

    def resolve_default(
        self, kind: NotificationKind | str, channel: Channel | str, locales: Sequence[str | None]
    ) -> tuple[str, TemplateSet]:
        """``(locale, TemplateSet)`` for the first locale in :func:`candidate_locales` with a default."""
        kind, channel = NotificationKind(kind), Channel(channel)
        if not all(loc is None or type(loc) is str for loc in locales):
            return self._resolve_default(kind, channel, locales)  # odd values: not remembered
        key = (kind, channel, *locales)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolve_default(kind, channel, locales)
            if len(self._resolved) >= 1024:
                self._resolved.clear()
            self._resolved[key] = found
        return found

    def _resolve_default(
        self, kind: NotificationKind, channel: Channel, locales: Sequence[str | None]
    ) -> tuple[str, TemplateSet]:
        for loc in candidate_locales(locales):
            tset = self._default_or_none(kind.value, channel.value, loc)
            if tset is not None:
                return loc, tset
        raise NoDefaultTemplate(f"no default {channel.value} template for {kind.value}")

    def default_locales(self, kind: NotificationKind | str, channel: Channel | str) -> list[str]:
        """Locales that ship a default for this kind/channel (sorted)."""
        kind, channel = NotificationKind(kind), Channel(channel)
        root = self.templates_dir / channel.value
        if not root.is_dir():
            return []
        return sorted(
            p.name
            for p in root.iterdir()
            if p.is_dir() and self._default_or_none(kind.value, channel.value, p.name) is not None
        )

    # -- rendering -----------------------------------------------------------------------------
    def _compile(self, source: str, *, html: bool) -> Template:
        key = (html, source)
        tmpl = self._compiled.get(key)
        if tmpl is None:
            tmpl = self._envs[html].from_string(source)
            if len(self._compiled) >= 512:
                self._compiled.clear()
            self._compiled[key] = tmpl
        return tmpl

    def _render_part(self, field: str, source: str, context: dict[str, Any], *, html: bool) -> str:
        try:
            tmpl = self._compile(source, html=html)
        except TemplateSyntaxError as exc:
            raise RenderError(field, exc.lineno, f"syntax error: {exc.message}") from exc
        chunks: list[str] = []
        size = 0
        try:
            with render_budget(self.timeout_s):
                try:
                    # Template.generate(context) without its own generator in the way of every chunk
                    for chunk in tmpl.root_render_func(tmpl.new_context(context)):
                        if not chunk:
                            continue  # a loop of empty outputs must not grow this list either
                        size += len(chunk)
                        if size > MAX_OUTPUT_CHARS:
                            break
                        chunks.append(chunk)
                except Exception:
                    tmpl.environment.handle_exception()  # re-raised with the template's line numbers
            if size > MAX_OUTPUT_CHARS:
                raise RenderError(field, None, f"output is larger than {MAX_OUTPUT_CHARS // 1024} KB")
        except RenderError:
            raise
        except TemplateTooLarge as exc:
            raise RenderError(field, _template_line(exc.__traceback__), f"too large: {exc}") from exc
        except SecurityError as exc:
            raise RenderError(field, _template_line(exc.__traceback__), f"not allowed: {exc}") from exc
        except RenderTimeout as exc:
            raise RenderError(
                field, _template_line(exc.__traceback__), f"took longer than {self.timeout_s:g} s to render"
            ) from exc
        except RecursionError as exc:
            raise RenderError(field, None, "too deeply nested (recursion)") from exc
        except Exception as exc:  # untrusted code: anything it raises is the template's error
            raise RenderError(
                field, _template_line(exc.__traceback__), str(exc) or type(exc).__name__
            ) from exc
        return "".join(chunks)

    def render_set(
        self, channel: Channel | str, tset: TemplateSet, context: Mapping[str, Any], *, locale: str
    ) -> Rendered:
        """Render one TemplateSet (no locale resolution). Raises :class:`RenderError`."""
        channel = Channel(channel)
        ctx = dict(context)
        ctx["locale"] = locale  # the locale actually rendered wins over any caller value
        if channel is Channel.SMS:
            text = _clean_text(self._render_part("text", tset.text, ctx, html=False))
            segments, encoding = sms_segments(text)
            return Rendered(
                subject=None, text=text, html=None, locale=locale, segments=segments, encoding=encoding
            )
        subject = _clean_subject(self._render_part("subject", tset.subject or "", ctx, html=False))
        text = _clean_text(self._render_part("text", tset.text, ctx, html=False))
        html = self._render_part("html", tset.html, ctx, html=True).strip() if tset.html else None
        return Rendered(subject=subject, text=text, html=html, locale=locale)

    def render(
        self,
        kind: NotificationKind | str,
        channel: Channel | str,
        context: Mapping[str, Any],
        *,
        locales: Sequence[str | None],
        override: TemplateSet | None = None,
    ) -> Rendered:
        """Render a notification.

        ``override`` is the merchant's stored template, already chosen for a locale by the caller;
        pass that locale first in ``locales`` (it becomes ``Rendered.locale`` and the ``date``
        filter's default). Without an override the shipped default is used, trying
        :func:`candidate_locales` (customer locale → merchant default → ``en``).
        Raises :class:`RenderError` or :class:`NoDefaultTemplate`.
        """
        if override is not None:
            cands = candidate_locales(locales)
            return self.render_set(channel, override, context, locale=cands[0])
        locale, tset = self.resolve_default(kind, channel, locales)
        return self.render_set(channel, tset, context, locale=locale)

    # -- validation ----------------------------------------------------------------------------
    def validate(self, kind: NotificationKind | str, channel: Channel | str, tset: TemplateSet) -> None:
        """Raise :class:`TemplateValidationError` listing every problem found (with line numbers)."""
        kind, channel = NotificationKind(kind), Channel(channel)
        errors: list[dict[str, Any]] = []

        def err(field: str, line: int | None, message: str) -> None:
            entry = {"field": field, "line": line, "message": message}
            if entry not in errors:
                errors.append(entry)

        if channel is Channel.SMS and kind in MERCHANT_ALERTS:
            err("text", None, f"{kind.value} is a merchant alert: email only")
        parts: dict[str, str | None] = {"subject": tset.subject, "text": tset.text, "html": tset.html}
        if channel is Channel.SMS:
            for field in ("subject", "html"):
                if parts[field]:
                    err(field, None, "SMS templates have only a text part")
                parts[field] = None
        if channel is Channel.EMAIL and not (tset.subject or "").strip():
            err("subject", None, "an email template needs a subject")
        if not (tset.text or "").strip():
            err("text", None, "a text part is required")

        parseable: dict[str, str] = {}
        for field, source in parts.items():
            if source is None or not source.strip():
                continue
            if len(source) > MAX_SOURCE_CHARS:
                err(field, None, f"template is larger than {MAX_SOURCE_CHARS // 1024} KB")
                continue
            env = self._envs[field == "html"]
            try:
                tree = env.parse(source)
            except TemplateSyntaxError as exc:
                err(field, exc.lineno, f"syntax error: {exc.message}")
                continue
            before = len(errors)
            for line, message in self._static_problems(kind, env.globals, tree):
                err(field, line, message)
            if len(errors) == before:
                parseable[field] = source

        if not errors:
            checked = TemplateSet(subject=parts["subject"], text=parts["text"] or "", html=parts["html"])
            for label, ctx in (
                ("", sample_context(kind)),
                (" (with optional values missing)", sparse_context(kind)),
            ):
                try:
                    rendered = self.render_set(channel, checked, ctx, locale=FALLBACK_LOCALE)
                except RenderError as exc:
                    err(exc.field, exc.line, exc.message + label)
                    continue
                if channel is Channel.SMS and (rendered.segments or 0) > MAX_SMS_SEGMENTS:
                    err(
                        "text",
                        None,
                        f"SMS renders to {rendered.segments} segments ({rendered.encoding}); "
                        f"the limit is {MAX_SMS_SEGMENTS}",
                    )
        if errors:
            order = {f: i for i, f in enumerate(_FIELDS_ORDER)}
            errors.sort(key=lambda e: (order.get(e["field"], 9), e["line"] or 0))
            raise TemplateValidationError(errors)

    def _static_problems(
        self, kind: NotificationKind, env_globals: Mapping[str, Any], tree: nodes.Template
    ) -> list[tuple[int | None, str]]:
        problems: list[tuple[int | None, str]] = []
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            if isinstance(node, nodes.Getattr):
                attr: str | None = node.attr
            elif (
                isinstance(node, nodes.Getitem)
                and isinstance(node.arg, nodes.Const)
                and isinstance(node.arg.value, str)
            ):
                attr = node.arg.value
            else:
                attr = None
            if attr is not None and (attr.startswith("_") or attr in _UNSAFE_ATTRS):
                problems.append((node.lineno, f"access to {attr!r} is not allowed (templates are sandboxed)"))
        if problems:
            return problems
        allowed = context_names(kind) | set(env_globals) | {"self", "loop", "varargs", "kwargs", "caller"}
        names_lines: dict[str, int] = {}
        for name_node in tree.find_all(nodes.Name):
            names_lines.setdefault(name_node.name, name_node.lineno)
        for name in sorted(meta.find_undeclared_variables(tree) - allowed):
            problems.append(
                (
                    names_lines.get(name),
                    f"unknown name {name!r}; allowed: {', '.join(sorted(context_names(kind)))}",
                )
            )
        fields = object_fields(kind)
        for node in tree.find_all(nodes.Getattr):
            if (
                isinstance(node.node, nodes.Name)
                and node.node.name in fields
                and node.attr not in fields[node.node.name]
            ):
                obj = node.node.name
                problems.append(
                    (
                        node.lineno,
                        f"unknown field '{obj}.{node.attr}'; {obj} has: {', '.join(sorted(fields[obj]))}",
                    )
                )
        return problems


_default_renderer: Renderer | None = None


def default_renderer() -> Renderer:
    global _default_renderer
    if _default_renderer is None:
        _default_renderer = Renderer()
    return _default_renderer


def validate(kind: NotificationKind | str, channel: Channel | str, tset: TemplateSet) -> None:
    """Module-level shortcut for :meth:`Renderer.validate` with the default templates folder."""
    default_renderer().validate(kind, channel, tset)


__all__ = [
    "DEFAULT_TEMPLATES_DIR",
    "MAX_OUTPUT_CHARS",
    "MAX_SMS_SEGMENTS",
    "MAX_SOURCE_CHARS",
    "NoDefaultTemplate",
    "RenderError",
    "Rendered",
    "Renderer",
    "TemplateSet",
    "TemplateValidationError",
    "candidate_locales",
    "default_renderer",
    "sample_context",
    "sms_segments",
    "validate",
]
