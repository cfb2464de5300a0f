"""One grammar and one registry shape for the specs of sources, embedders and stores.

A spec is `NAME`, `NAME:ARG`, `NAME(ITEM,...)` or `NAME:ARG(ITEM,...)`, as each backend allows:
`sqlite-vec`, `jsonl:corpus/docs.jsonl`, `flaky(sqlite-vec,transient=0.1,poison=a)`. A registry
maps each NAME to a typed options class, which parses the spec and refuses what is wrong with a
SpecError, and to a factory that takes those options. Specs never carry secrets: connections come
from the settings (DESIGN.md, "Store and embedder specs").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar

from reindexer.errors import SpecError, UnknownBackend

_NAME_END = re.compile(r"[:(]")


@dataclass(frozen=True, slots=True)
class ParsedSpec:
    """A spec split into its parts; what the parts mean is each backend's options' business."""

    text: str
    name: str
    arg: str = ""
    items: tuple[str, ...] = ()

    def pairs(self, items: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
        """`key=value` items as pairs, in order (keys may repeat); a bare item is refused."""
        pairs: list[tuple[str, str]] = []
        for item in self.items if items is None else items:
            key, sep, value = item.partition("=")
            if not sep:
                raise SpecError(f"{self.name}: option {item!r} must be key=value")
            pairs.append((key, value))
        return pairs


class BackendOptions(Protocol):
    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        """The typed options of `spec`; raises SpecError naming what is wrong."""
        ...


@dataclass(frozen=True, slots=True)
class NoOptions:
    """The options of a backend that takes none: `hashing`, `sqlite-vec`."""

    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        return cls()


Product = TypeVar("Product")
Options = TypeVar("Options", bound=BackendOptions)


@dataclass(frozen=True)
class Backend(Generic[Options, Product]):
    name: str
    options: type[Options]
    factory: Callable[[Options], Product]
    # How the spec is written: a `:ARG` part and/or a parenthesised item list.
    takes_arg: bool = False
    takes_items: bool = False
    # The form shown in errors and help, for example "flaky(INNER,key=value,...)".
    usage: str = ""
    # Whether its connection settings (and optional extra) are in place, so that the New job
    # form offers it; a spec of an unconfigured backend is refused by its options anyway.
    configured: Callable[[], bool] = lambda: True

    @property
    def shown_as(self) -> str:
        return self.usage or self.name


@dataclass(frozen=True)
class Resolved(Generic[Product]):
    """A parsed spec with its backend and typed options, ready to open."""

    spec: ParsedSpec
    backend: Backend[Any, Product]
    options: Any

    def open(self) -> Product:
        return self.backend.factory(self.options)


class Registry(Generic[Product]):
    """Backends of one kind by name: parse a spec into typed options, open it."""

    def __init__(
        self, kind: str, *, unknown_label: str | None = None, shape: str | None = None
    ) -> None:
        self.kind = kind
        self._unknown_label = unknown_label or kind
        # A shape every spec of this kind has, as "KIND:PATH" for sources.
        self._shape = shape
        self._backends: dict[str, Backend[Any, Product]] = {}

    def register(
        self,
        name: str,
        options: type[Options],
        factory: Callable[[Options], Product],
        *,
        takes_arg: bool = False,
        takes_items: bool = False,
        usage: str = "",
        configured: Callable[[], bool] | None = None,
    ) -> None:
        self._backends[name] = Backend(
            name, options, factory, takes_arg, takes_items, usage, configured or (lambda: True)
        )

    def unregister(self, name: str) -> None:
        """Forget backend `name` (a test's own wrapper, once the test is done)."""
        self._backends.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._backends)

    def __contains__(self, name: object) -> bool:
        return name in self._backends

    def usages(self) -> list[str]:
        return [backend.shown_as for backend in self._backends.values()]

    def configured_usages(self) -> list[str]:
        """The usages of the backends whose connections are configured, for the New job form."""
        return [backend.shown_as for backend in self._backends.values() if backend.configured()]

    def resolve(self, text: str) -> Resolved[Product]:
        """Parse `text` and its options; raises SpecError (UnknownBackend for an unknown name)."""
        name = _NAME_END.split(text, maxsplit=1)[0]
        if self._shape is not None and name == text:
            kinds = ", ".join(self._backends)
            raise SpecError(f"{self.kind} {text!r} must look like {self._shape} (kinds: {kinds})")
        backend = self._backends.get(name)
        if backend is None:
            known = ", ".join(self.usages())
            raise UnknownBackend(f"unknown {self._unknown_label} {name!r}; known: {known}")
        spec = self._split(text, name, backend)
        return Resolved(spec, backend, backend.options.from_spec(spec))

    def open(self, text: str) -> Product:
        return self.resolve(text).open()

    def _split(self, text: str, name: str, backend: Backend[Any, Product]) -> ParsedSpec:
        rest = text[len(name) :]
        arg = ""
        if backend.takes_arg:
            if not rest.startswith(":"):
                raise SpecError(f"{self.kind} {text!r} must look like {backend.shown_as}")
            arg, rest = rest[1:], ""
            if backend.takes_items and arg.endswith(")") and "(" in arg:
                arg, _, inner = arg.partition("(")
                rest = f"({inner}"
        if not rest:
            return ParsedSpec(text, name, arg)
        if backend.takes_items and rest.startswith("(") and rest.endswith(")"):
            return ParsedSpec(text, name, arg, tuple(rest[1:-1].split(",")))
        raise SpecError(f"{self.kind} {text!r} must look like {backend.shown_as}")
