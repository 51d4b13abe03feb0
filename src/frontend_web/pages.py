"""The HTML pages, rendered on the server from the package's Jinja2 templates."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

if TYPE_CHECKING:
    from collections.abc import Mapping


@cache
def _templates() -> Environment:
    # The templates are package data, found through the package itself, so they
    # are there wherever the package is installed (a wheel, an editable install).
    return Environment(
        loader=PackageLoader("frontend_web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


NO_STORE = {"Cache-Control": "no-store"}
"""For pages holding a form's tokens or an outcome: no cache may keep them."""


def render(
    template: str,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,  # noqa: ANN401 - whatever the template reads
) -> HTMLResponse:
    """Render a template into an HTML response.

    Args:
        template: The template's file name, such as ``"signup.html"``.
        status: The response's status.
        headers: Extra response headers.
        **context: The template's variables.

    Returns:
        The response, ``text/html; charset=utf-8``.
    """
    html = _templates().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=dict(headers or {}))
