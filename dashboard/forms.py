"""The "New job" form: field parsing only; JobSpec.validate stays the authority on what is valid."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django import forms

from reindexer import conf
from reindexer.embedders import EMBEDDERS
from reindexer.errors import SpecError
from reindexer.jobs import MAX_RETRIES_LIMIT, JobSpec
from reindexer.models import MAX_BATCH_SIZE, MIN_BATCH_SIZE
from reindexer.sources.directory import SUFFIXES
from reindexer.stores import STORES

# Listing the roots walks the file system on every form render, so keep it shallow and short.
MAX_SOURCE_DEPTH = 4
MAX_SOURCE_CHOICES = 200

# JobSpec.validate raises one SpecError for the first problem; its message says which field.
_MESSAGE_FIELDS = (
    ("batch size", "batch_size"),
    ("max retries", "max_retries"),
    ("max failed ratio", None),
    ("name", "name"),
    ("unknown embedder", "embedder"),
    ("unknown store", "store"),
    ("flaky", "store"),
    ("store", "store"),
    ("collection", "collection"),
)


_DEFAULTS: dict[str, Any] = {
    f.name: f.default
    for f in dataclasses.fields(JobSpec)
    if f.default is not dataclasses.MISSING and f.name != "source"
}


def available_sources(roots: tuple[Path, ...] | None = None) -> list[str]:
    """Source specs found under the allowed roots: `jsonl:` files and `directory:` folders that
    hold *.txt or *.md files. Paths under the first root are relative, as `reindex start` takes
    them; hidden entries and symbolic links are skipped, as the source itself refuses links."""
    roots = roots or conf.get().source_roots
    found: list[str] = []
    for index, root in enumerate(roots):
        for spec in _walk(root, relative=index == 0):
            found.append(spec)
            if len(found) >= MAX_SOURCE_CHOICES:
                return found
    return found


def _walk(root: Path, *, relative: bool) -> Iterator[str]:
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not (here / d).is_symlink()
        )
        if depth >= MAX_SOURCE_DEPTH:
            dirnames.clear()
        name = here.relative_to(root).as_posix() if relative else here.as_posix()
        if depth > 0 and any(Path(f).suffix.lower() in SUFFIXES for f in filenames):
            yield f"directory:{name}"
        for filename in sorted(filenames):
            path = here / filename
            if filename.endswith(".jsonl") and not path.is_symlink():
                yield f"jsonl:{path.relative_to(root).as_posix() if relative else path.as_posix()}"


class NewJobForm(forms.Form):
    source = forms.CharField(
        max_length=1000,
        help_text="jsonl:FILE or directory:FOLDER, inside the allowed source roots.",
        widget=forms.TextInput(
            attrs={
                "list": "source-choices",
                "placeholder": "jsonl:docs.jsonl",
                "autocomplete": "off",
            }
        ),
    )
    embedder = forms.CharField(max_length=200, initial="hashing")
    store = forms.CharField(
        max_length=1000,
        initial="sqlite-vec",
        help_text="sqlite-vec, or flaky(sqlite-vec,transient=0.1,…) to rehearse failures.",
        widget=forms.TextInput(attrs={"list": "store-choices"}),
    )
    collection = forms.CharField(max_length=200, initial="default")
    # No min/max validators here: out-of-range values reach JobSpec.validate, whose message is
    # the one the command line and the API give too. The widget attributes only guide the browser.
    batch_size = forms.IntegerField(
        initial=200,
        widget=forms.NumberInput(attrs={"min": MIN_BATCH_SIZE, "max": MAX_BATCH_SIZE}),
    )
    max_retries = forms.IntegerField(
        initial=3, widget=forms.NumberInput(attrs={"min": 0, "max": MAX_RETRIES_LIMIT})
    )
    name = forms.CharField(
        max_length=200, required=False, help_text="Optional; defaults to the source."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source_choices = available_sources()
        self.embedder_choices = list(EMBEDDERS)
        self.store_choices = list(STORES)

    def spec(self) -> JobSpec:
        data = self.cleaned_data
        return JobSpec(
            source=data["source"].strip(),
            embedder=data["embedder"].strip(),
            store=data["store"].strip(),
            collection=data["collection"].strip(),
            batch_size=data["batch_size"],
            max_retries=data["max_retries"],
            name=data.get("name", "").strip(),
        )

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        # JobSpec.validate stops at the first problem; put each failing field back to its default
        # and validate again, so that every wrong field is reported at once.
        spec = self.spec()
        for _ in range(len(self.fields)):
            try:
                spec.validate()
            except SpecError as exc:
                field = self.add_spec_error(exc)
                if field not in _DEFAULTS:
                    break
                spec = dataclasses.replace(spec, **{field: _DEFAULTS[field]})
            else:
                break
        return cleaned

    def add_spec_error(self, exc: SpecError) -> str | None:
        """Show a SpecError next to the field it is about (from create_job, too); return it."""
        message = str(exc)
        field = next(
            (f for prefix, f in _MESSAGE_FIELDS if message.lower().startswith(prefix)), "source"
        )
        self.add_error(field, message)
        return field
