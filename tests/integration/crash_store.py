"""`crash-after-write(INNER,DOC_ID,MARKER)`: a store that SIGKILLs its own process right after the
upsert of the batch that holds DOC_ID, once (the file MARKER in the data dir says it happened):
a real crash between a store write and the commit of its checkpoint.

Run as `python -m tests.integration.crash_store reindex_worker ARGS...` for a worker subprocess
that knows the store; `register()` makes it known to the test process too.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from reindexer.backends import ParsedSpec
from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.errors import SpecError
from reindexer.stores.base import VectorStore
from reindexer.stores.delegating import DelegatingBackend, DelegatingStore

NAME = "crash-after-write"


@dataclass(frozen=True)
class CrashOptions:
    inner: str
    doc_id: str
    marker: str

    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        if len(spec.items) != 3 or not all(spec.items):
            raise SpecError(f"{NAME}(INNER,DOC_ID,MARKER) takes three values")
        return cls(*spec.items)


class CrashBackend(DelegatingBackend):
    def __init__(self, options: CrashOptions) -> None:
        from reindexer.stores import store_backend

        super().__init__(store_backend(options.inner))
        self.options = options

    def open(self, collection: str, dimensions: int) -> VectorStore:
        return CrashStore(self.inner.open(collection, dimensions), self.options)


@dataclass
class CrashStore(DelegatingStore):
    inner: VectorStore
    options: CrashOptions

    def upsert(self, docs: Sequence[Document], vectors: Vectors) -> None:
        from reindexer import conf

        self.inner.upsert(docs, vectors)
        marker = conf.get().data_dir / self.options.marker
        if any(doc.id == self.options.doc_id for doc in docs) and not marker.exists():
            marker.write_text(str(os.getpid()))
            self.inner.close()  # the write is durable: only the job's commit is lost
            os.kill(os.getpid(), signal.SIGKILL)


def register() -> None:
    from reindexer.stores import STORES

    STORES.register(NAME, CrashOptions, CrashBackend, takes_items=True)


def unregister() -> None:
    from reindexer.stores import STORES

    STORES.unregister(NAME)


if __name__ == "__main__":
    import django
    from django.core.management import call_command

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reindexer.settings")
    django.setup()
    register()
    call_command(*sys.argv[1:])
