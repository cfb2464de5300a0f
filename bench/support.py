"""Set-up shared by the issue-11 benches (incremental re-run, throttle, swap availability): a
fresh SQLite job database in a temp dir, and a plain JSONL corpus."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path


def setup_django(data_dir: Path) -> None:
    """Django on a fresh SQLite job database under `data_dir`, whatever the shell has set."""
    os.environ["REINDEXER_DATA_DIR"] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "reindexer.settings"
    for name in ("DATABASE_URL", "REDIS_URL", "REINDEXER_PIPELINE"):
        os.environ.pop(name, None)
    import django

    django.setup()
    logging.getLogger("reindexer").setLevel(logging.WARNING)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def write_corpus(path: Path, docs: int) -> None:
    words = ["vector", "store", "embedding", "batch", "index", "search", "query", "document"]
    with path.open("w", encoding="utf-8") as f:
        for i in range(docs):
            text = " ".join(words[(i * 7 + k) % len(words)] for k in range(24))
            f.write(json.dumps({"id": f"doc-{i}", "text": f"{i}: {text}", "metadata": {"n": i}}))
            f.write("\n")
