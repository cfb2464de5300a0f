"""The pipelined engine's parts: which path a job takes, and a thread that reads and embeds the
next batch while the engine writes and commits the current one.

The thread never touches the Django database: every write, the checkpoint's included, stays on
the engine's thread, in batch order. Each batch carries the reader's checkpoint taken right after
it was read, so a commit never moves the checkpoint past a batch that is not written.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from reindexer.batching import EmbeddedBatch
from reindexer.documents import Document, Record
from reindexer.embedders import Embedder
from reindexer.sources import SourceReader
from reindexer.stores import STORES
from reindexer.stores.flaky import FlakyOptions

# Batches past the checkpoint at any time: the one being written, and the next, read and
# embedded meanwhile. A crash redoes at most these.
PREFETCH_DEPTH = 2

# Stores whose upsert waits on a server's socket, which frees the GIL for the embedding thread;
# sqlite-vec writes in this process.
SOCKET_STORES = frozenset({"pgvector", "milvus"})

T = TypeVar("T")


class RetriesSeen:
    """The retries that the reader and the embedder made on their own, not yet counted.

    Called by one thread at a time: the one that reads (the prefetch thread while it runs).
    """

    def __init__(self, reader: SourceReader, embedder: Embedder) -> None:
        self._reader = reader
        self._embedder = embedder
        self._counted = 0

    def new(self) -> int:
        seen = self._reader.retries + self._embedder.retries
        fresh, self._counted = seen - self._counted, seen
        return max(0, fresh)


@dataclass
class PreparedBatch:
    """A batch as read: its number in the job, the checkpoint right after it, the retries the
    reader and embedder made for it, and, when embedded ahead, its vectors."""

    number: int
    records: list[Record]
    checkpoint: dict[str, Any]
    retries: int = 0
    embedded: EmbeddedBatch | None = field(default=None, repr=False)
    # The ids an incremental job skips: their content hash matches their last write.
    unchanged: frozenset[str] = frozenset()

    @property
    def all_docs(self) -> list[Document]:
        """The batch's well-formed records."""
        return [r for r in self.records if isinstance(r, Document)]

    @property
    def docs(self) -> list[Document]:
        """The documents to embed and write: the well-formed ones, but the unchanged."""
        unchanged = self.unchanged
        return [r for r in self.records if isinstance(r, Document) and r.id not in unchanged]


def read_batches(reader: SourceReader, size: int, only: set[str] | None) -> Iterator[list[Record]]:
    """The reader's batches; a retry job keeps only the ids it retries (so its batches shrink)."""
    while records := reader.read_batch(size):
        if only is not None:
            records = [record for record in records if record.id in only]
        if records:
            yield records


def prepared_batches(
    reader: SourceReader,
    size: int,
    only: set[str] | None,
    retried: RetriesSeen,
    first_number: int,
    embed: Callable[[PreparedBatch], object] | None = None,
) -> Generator[PreparedBatch, None, None]:
    """The reader's batches numbered from `first_number`, each with its checkpoint; `embed`, when
    given, embeds each one before it is handed on (the pipelined path)."""
    for number, records in enumerate(read_batches(reader, size, only), start=first_number):
        batch = PreparedBatch(number, records, dict(reader.checkpoint()))
        if embed is not None:
            embed(batch)
        batch.retries = retried.new()
        yield batch


@dataclass(frozen=True)
class PathChoice:
    pipelined: bool
    reason: str


def store_io(spec: str) -> str | None:
    """Why the store `spec` names waits on I/O while it writes, or None when it does not."""
    resolved = STORES.resolve(spec)
    options = resolved.options
    if isinstance(options, FlakyOptions):
        if options.latency_ms > 0:
            return f"its flaky latency of {options.latency_ms:g} ms"
        return store_io(options.inner)
    name = resolved.spec.name
    return f"{name} talks to its server" if name in SOCKET_STORES else None


def choose_path(setting: str, embedder: Embedder, store_spec: str) -> PathChoice:
    """Pipelined or sequential, as REINDEXER_PIPELINE says; `auto` overlaps only where a thread
    can run while the other waits: an embedder that releases the GIL, or a store waiting on I/O.
    """
    if setting == "on":
        return PathChoice(True, "pipelined (REINDEXER_PIPELINE=on)")
    if setting == "off":
        return PathChoice(False, "sequential (REINDEXER_PIPELINE=off)")
    if embedder.releases_gil:
        return PathChoice(True, f"pipelined: the {embedder.name} embedder releases the GIL")
    waits = store_io(store_spec)
    if waits is not None:
        return PathChoice(True, f"pipelined: the store waits on I/O ({waits})")
    return PathChoice(
        False,
        f"sequential: the {embedder.name} embedder holds the GIL and the store writes in-process",
    )


class Prefetcher(Generic[T]):
    """Runs a generator in a thread of its own, at most `depth` items ahead of its consumer.

    An item counts until the consumer asks for the next one, so `depth` bounds the items being
    produced, waiting and in use together. The generator's exception reaches the consumer after
    the items before it, once the thread has ended. `close()` stops the thread at its next item,
    joins it and returns the items produced but never handed out.
    """

    def __init__(self, items: Generator[T, None, None], *, depth: int, name: str) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._items = items
        self._depth = depth
        self._changed = threading.Condition()
        self._ready: deque[T] = deque()
        self._in_use = 0  # 1 while the consumer holds an item
        self._stopping = False
        self._ended = False
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            while self._slot():
                item = next(self._items)
                with self._changed:
                    self._ready.append(item)
                    self._changed.notify_all()
        except StopIteration:
            pass
        except BaseException as exc:  # a bug included: the consumer raises it as its own
            self._failure = exc
        finally:
            self._items.close()
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def _slot(self) -> bool:
        """Wait until one more item fits ahead; False once stopping."""
        with self._changed:
            while not self._stopping and len(self._ready) + self._in_use >= self._depth:
                self._changed.wait()
            return not self._stopping

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        with self._changed:
            self._in_use = 0  # the consumer is done with the last item
            self._changed.notify_all()
            while not self._ready and not self._ended:
                self._changed.wait()
            if self._ready:
                self._in_use = 1
                return self._ready.popleft()
        self._thread.join()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        raise StopIteration

    def close(self) -> list[T]:
        """Stop and join the thread; the items it produced that were never handed out."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join()
        with self._changed:
            dropped = list(self._ready)
            self._ready.clear()
        return dropped

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class BatchStream:
    """One pass's batches, prepared ahead in a Prefetcher (pipelined) or as they are asked for."""

    def __init__(
        self, batches: Generator[PreparedBatch, None, None], *, ahead: bool, name: str
    ) -> None:
        self._batches = batches
        self._ahead = Prefetcher(batches, depth=PREFETCH_DEPTH, name=name) if ahead else None

    def __iter__(self) -> Iterator[PreparedBatch]:
        return self._ahead if self._ahead is not None else self._batches

    def close(self) -> list[PreparedBatch]:
        """End the pass (the thread joined, if any); the batches prepared ahead and dropped, to
        be redone from the checkpoint. Closing again returns nothing more."""
        if self._ahead is None:
            self._batches.close()
            return []
        return self._ahead.close()
