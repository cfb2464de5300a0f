"""The "New job" form: its fields come from JobSpec, which stays the authority on what is valid."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django import forms
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from reindexer import conf, specs
from reindexer.backends import Registry
from reindexer.embedders import EMBEDDERS
from reindexer.embedders.openai import BASE_URL_SETTING as OPENAI_SETTING
from reindexer.errors import SpecError
from reindexer.models import ReindexJob
from reindexer.sources import SOURCES
from reindexer.sources.directory import SUFFIXES
from reindexer.sources.sql import SETTING as SQL_SETTING
from reindexer.specs import NAME_MAX, InvalidSpec, JobSpec
from reindexer.stores import STORES
from reindexer.stores.milvus import SETTING as MILVUS_SETTING
from reindexer.stores.pgvector import SETTING as PGVECTOR_SETTING

RERUN_SUFFIX = " (re-run)"

# Listing the roots walks the file system on every form render, so keep it shallow and short.
MAX_SOURCE_DEPTH = 4
MAX_SOURCE_CHOICES = 200


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


# Browser hints only; the spec validates.
_WIDGET_ATTRS: dict[str, dict[str, str]] = {
    "source": {"list": "source-choices", "placeholder": "jsonl:docs.jsonl", "autocomplete": "off"},
    "embedder": {"list": "embedder-choices"},
    "store": {"list": "store-choices"},
}

# What enables a backend that is not configured, by backend name (the registries' `configured`).
ENABLED_BY: dict[str, str] = {
    "pgvector": f"set {PGVECTOR_SETTING}",
    "milvus": f"set {MILVUS_SETTING}",
    "minilm": "install the extra reindexer[minilm]",
    "openai": f"set {OPENAI_SETTING}",
    "sql": f"set {SQL_SETTING}",
}


def _backend_name(usage: str) -> str:
    return re.split(r"[:(]", usage, maxsplit=1)[0]


def missing_backends(registry: Registry[Any]) -> list[str]:
    """The backends of `registry` that are not configured, each with what enables it, as
    "pgvector: set REINDEXER_PGVECTOR_URL"."""
    configured = set(registry.configured_usages())
    return [
        f"{usage}: {ENABLED_BY.get(_backend_name(usage), 'not configured')}"
        for usage in registry.usages()
        if usage not in configured
    ]


# Fields that a form posted without them (a script, a page loaded before they existed) leaves
# to JobSpec's default rather than refusing: a job runs unsliced unless asked otherwise.
DEFAULTED_WHEN_ABSENT = frozenset({"slices", "mode", "cleanup", "approve"})


def _form_field(name: str, info: FieldInfo) -> forms.Field:
    """The form field of one JobSpec field. It only parses: the bounds are JobSpec's to check,
    so the form's messages are the ones the command line and the API give."""
    default = info.get_default()
    options: dict[str, Any] = {
        "label": name.replace("_", " ").capitalize(),
        "help_text": info.description or "",
        # A field whose default is empty may be left empty; the others must be filled in.
        "required": name not in DEFAULTED_WHEN_ABSENT
        and (default is PydanticUndefined or default not in ("", None)),
        "initial": None if default is PydanticUndefined else default,
    }
    kind = specs.number_type(info)
    if kind is not None:
        low, high = specs.bounds(name)
        attrs = {"min": low, "max": high, **({"step": "any"} if kind is float else {})}
        field_class = forms.IntegerField if kind is int else forms.FloatField
        return field_class(widget=forms.NumberInput(attrs=attrs), **options)
    allowed = specs.choices(info)
    if allowed:
        # The spec checks the value; the form only offers the choices, so a posted typo reaches
        # JobSpec and gets its message.
        return forms.CharField(
            widget=forms.Select(choices=[(value, value) for value in allowed]), **options
        )
    # The length is checked here too, before the spec's validators see an oversized value; in
    # the spec's words. The browser gets it as the input's maxlength.
    longest = specs.max_length(name)
    messages = {"max_length": f"{name} must be at most {longest} characters"}
    return forms.CharField(
        widget=forms.TextInput(attrs=_WIDGET_ATTRS.get(name, {})),
        max_length=longest,
        error_messages=messages,
        **options,
    )


class NewJobForm(forms.Form):
    """The fields of JobSpec, in its order; `clean` validates through JobSpec.parse."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, info in JobSpec.model_fields.items():
            self.fields[name] = _form_field(name, info)
        self.source_choices = available_sources()
        self.source_kinds = SOURCES.configured_usages()
        # Only the backends whose connections are configured; the others, with their setting,
        # go into the field's help (a spec of one typed in anyway is refused, naming it).
        self.embedder_choices = EMBEDDERS.configured_usages()
        # flaky(...) is offered as one example around sqlite-vec (the template's), not as usage.
        self.store_choices = [u for u in STORES.configured_usages() if "(" not in u]
        self.missing: dict[str, list[str]] = {
            "source": missing_backends(SOURCES),
            "embedder": missing_backends(EMBEDDERS),
            "store": missing_backends(STORES),
        }
        for name, missing in self.missing.items():
            if missing:
                field = self.fields[name]
                help_text = f"{field.help_text} " if field.help_text else ""
                field.help_text = f"{help_text}Not configured: {'; '.join(missing)}."
        self.validated_spec: JobSpec | None = None

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if cleaned is None:
            return cleaned
        # Only the fields that parsed go on to the spec, so that each error is reported once.
        data = {k: v for k, v in cleaned.items() if k not in self.errors}
        for name in DEFAULTED_WHEN_ABSENT:
            if data.get(name) in (None, ""):
                data.pop(name, None)
        try:
            spec = JobSpec.parse(data)
        except InvalidSpec as exc:
            self.add_spec_error(exc)
        else:
            if not self.errors:
                self.validated_spec = spec
        return cleaned

    def spec(self) -> JobSpec:
        if self.validated_spec is None:
            raise ValueError("spec() is only available once the form is valid")
        return self.validated_spec

    def add_spec_error(self, exc: SpecError) -> None:
        """Show each problem beside the field it concerns (from create_job too)."""
        errors = exc.errors if isinstance(exc, InvalidSpec) else [exc]
        for error in errors:
            field = error.field if error.field in self.fields else None
            # A required field that failed to parse is reported already, as "missing" again.
            if field is not None and field in self.errors:
                continue
            self.add_error(field, str(error))


class RerunRefused(Exception):
    """`?from=` names no job that can be re-run; `status` is the page's answer (404 or 409)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def rerun_initial(raw_pk: str) -> dict[str, Any]:
    """The New job form's values for a re-run of the finished job `raw_pk`: its settings, and
    its name marked as a re-run. Raises RerunRefused for an unknown or unfinished job."""
    job = ReindexJob.objects.filter(pk=int(raw_pk)).first() if raw_pk.isdigit() else None
    if job is None:
        raise RerunRefused(f"There is no job {raw_pk!r} to re-run; the form starts empty.", 404)
    if not job.is_finished:
        raise RerunRefused(
            f"Job #{job.pk} is {job.status}; it can be re-run once it has finished.", 409
        )
    initial = {name: getattr(job, name) for name in JobSpec.model_fields}
    initial["name"] = job.name[: NAME_MAX - len(RERUN_SUFFIX)] + RERUN_SUFFIX
    return initial
