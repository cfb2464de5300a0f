"""`reindex_demo`: write the demo corpus, create an operator account, queue a few demo jobs."""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

from reindexer import conf
from reindexer.demo import write_demo_corpus
from reindexer.jobs import create_job
from reindexer.models import ReindexJob
from reindexer.specs import JobSpec

OPERATOR = "operator"


class Command(BaseCommand):
    help = "Set up the demo: corpus from installed packages, an operator account, demo jobs."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--no-jobs", action="store_true", help="only the corpus and the account"
        )

    def handle(self, *args: Any, no_jobs: bool = False, **options: Any) -> None:
        data_dir = conf.get().data_dir
        jsonl, folder, count = write_demo_corpus(data_dir / "corpus")
        self.stdout.write(
            f"demo corpus: {count} documents in {jsonl}, one file per package in {folder}"
        )

        password = secrets.token_urlsafe(12)
        user, created = User.objects.get_or_create(username=OPERATOR)
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(
            f"{'created' if created else 'reset'} account {OPERATOR!r} with password: {password}"
        )

        if no_jobs:
            return
        if ReindexJob.objects.active().filter(name__startswith="demo:").exists():
            self.stdout.write("demo jobs are already queued")
            return
        with jsonl.open(encoding="utf-8") as lines:
            first_ids = [json.loads(line)["id"] for line in list(lines)[5:8]]
        poison = ",".join(f"poison={doc_id}" for doc_id in first_ids)
        specs = [
            JobSpec(
                source="jsonl:corpus/packages.jsonl",
                # Latency stands in for a remote store, so that progress can be watched.
                store="flaky(sqlite-vec,latency=150)",
                collection="packages",
                batch_size=25,
                name="demo: package paragraphs",
            ),
            JobSpec(
                source="directory:corpus/packages",
                collection="package-files",
                batch_size=20,
                name="demo: package files",
            ),
            JobSpec(
                source="jsonl:corpus/packages.jsonl",
                store=f"flaky(sqlite-vec,transient=0.15,{poison},latency=200,seed=7)",
                collection="flaky-drill",
                batch_size=25,
                max_failed_ratio=0.2,
                name="demo: flaky store drill",
            ),
        ]
        for spec in specs:
            job = create_job(spec)
            self.stdout.write(f"queued job {job.pk}: {job.name}")
