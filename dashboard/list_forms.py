"""The jobs list's query string, validated: tab, search, filters, sort and page."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms

from dashboard.list_query import DEFAULT_SORT, SORTS, ListFilters
from reindexer import specs
from reindexer.models import JobStatus

SEARCH_MAX = 200


class JobListForm(forms.Form):
    """Bound to request.GET. An invalid field is reported and left out; the others still apply."""

    status = forms.ChoiceField(choices=[("", "All"), *JobStatus.choices], required=False)
    q = forms.CharField(max_length=SEARCH_MAX, required=False, label="Name")
    store = forms.CharField(max_length=specs.STORE_MAX, required=False)
    collection = forms.CharField(max_length=specs.COLLECTION_MAX, required=False)
    created_from = forms.DateField(required=False, label="Created from")
    created_to = forms.DateField(required=False, label="Created to")
    sort = forms.ChoiceField(choices=[(key, key) for key in SORTS], required=False)

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean() or {}
        start: date | None = cleaned.get("created_from")
        end: date | None = cleaned.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "The end of the range comes before its start.")
        return cleaned

    def filters(self) -> ListFilters:
        """The valid part of the query (call after is_valid())."""
        data = self.cleaned_data
        return ListFilters(
            status=data.get("status") or "",
            q=(data.get("q") or "").strip(),
            store=data.get("store") or "",
            collection=data.get("collection") or "",
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
            sort=data.get("sort") or DEFAULT_SORT,
        )

    def error_messages(self) -> list[str]:
        """One readable line per invalid field."""
        lines: list[str] = []
        for name, errors in self.errors.items():
            label = self.fields[name].label or name.replace("_", " ").capitalize()
            lines.extend(f"{label}: {error}" for error in errors)
        return lines
