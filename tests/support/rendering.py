"""Rendering one merchant template (the unit tests of the renderer and of template bombs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifiers.context import sample_context
from notifiers.rendering import Rendered, Renderer, TemplateSet


def render_shipped(
    renderer: Renderer,
    channel: str,
    override: TemplateSet,
    context: Mapping[str, Any] | None = None,
) -> Rendered:
    """The ``shipped`` notification on ``channel`` in English from the merchant template
    ``override``, with ``context`` (the sample context when not given)."""
    return renderer.render(
        "shipped",
        channel,
        sample_context("shipped") if context is None else context,
        locales=["en"],
        override=override,
    )
