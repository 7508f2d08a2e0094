"""Data Docs views that render the same bytes for the same validation results.

GX's stock Jinja views put two volatile things into every page: a ``?d=<now>`` cache-buster on
the logo URL and a random ``uuid4`` in each collapsible block's element id. Either would make
``reports/validation/data_docs/`` differ on every run of validate, so DVC would see a new output
for unchanged data. These subclasses drop the cache-buster and number the element ids in
rendering order; GX loads them by ``module_name``/``class_name`` from the site config
(:meth:`genreflow.validation.expectations.GxSession.build_data_docs`), its own extension point.
"""

from __future__ import annotations

from typing import Any

from great_expectations.render.view.view import (
    DefaultJinjaIndexPageView,
    DefaultJinjaPageView,
    contextfilter,
)


class _ContentOnly:
    """Mixin for a :class:`~great_expectations.render.view.view.DefaultJinjaView` subclass."""

    _element_count = 0

    def render(self, document: Any, template: Any = None, **kwargs: Any) -> Any:
        # Ids restart on every page, so a page's bytes do not depend on which pages came first.
        self._element_count = 0
        return super().render(document, template, **kwargs)  # type: ignore[misc]

    @contextfilter  # type: ignore[untyped-decorator]
    def add_data_context_id_to_url(
        self, jinja_context: Any, url: str, add_datetime: bool = True
    ) -> str:
        """The stock filter without its ``?d=<now>`` cache-buster (``add_datetime`` ignored)."""
        return super().add_data_context_id_to_url(  # type: ignore[misc]
            jinja_context, url, add_datetime=False
        )

    def generate_html_element_uuid(self, prefix: str | None = None) -> str:
        """A per-page counter instead of a random uuid4: unique within the page, and stable."""
        self._element_count += 1
        return f"{prefix or ''}{self._element_count}"


class ContentOnlyPageView(_ContentOnly, DefaultJinjaPageView):
    """Expectation-suite and validation-result pages."""


class ContentOnlyIndexPageView(_ContentOnly, DefaultJinjaIndexPageView):
    """The site's ``index.html``."""
