"""The one Jinja2 environment every HTML report is rendered with: autoescaping always on.

`select_autoescape(["html"])` matches template names ending in `.html` only, so templates named
`*.html.j2` rendered unescaped (stack-notes, "Jinja2 autoescape"): a landing file name or a
free-text value holding markup reached the page as markup. Here every value is escaped,
whatever the template's name; a template marks trusted markup explicitly (`|safe`) or not at all.
"""

from __future__ import annotations

from jinja2 import Environment, PackageLoader


def template_env() -> Environment:
    """Environment over `blinaetl/reports/templates` with autoescaping on for every template."""
    return Environment(
        loader=PackageLoader("blinaetl.reports", "templates"),
        autoescape=True,
    )
