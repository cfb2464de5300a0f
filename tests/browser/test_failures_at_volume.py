"""Failures useful at volume, in a real browser against daphne and a real worker: a job with
poisoned documents and malformed lines, its failures counted by type live on the job's page, the
failures page filtered, a preview, the source link landing on the failing line, and the CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from reindexer.jobs import create_job
from reindexer.specs import JobSpec
from tests.browser.servers import Stack
from tests.browser.test_dashboard_live import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = 60
POISONED = ("doc-7", "doc-23", "doc-41")
# Slow enough that the job's page is open while failures arrive.
STORE = "flaky(sqlite-vec,latency=60," + ",".join(f"poison={d}" for d in POISONED) + ")"
MALFORMED_LINES = ["{broken json", json.dumps({"id": "no-text"})]
DEADLINE_MS = 60_000


def panel_text(page: Page, selector: str) -> str:
    text: str = page.eval_on_selector(selector, "el => el.textContent.replace(/\\s+/g, ' ').trim()")
    return text


@pytest.mark.parametrize("live_mode", ["relay"])  # the live path is the sockets' own tests'
def test_failures__grouped_filtered_previewed_traced_to_their_line_and_exported(
    stack: Stack,
    browser_page: Page,
    viewer: User,
    make_corpus: Any,
    data_dir: Path,
    live_mode: str,
) -> None:
    page = browser_page
    make_corpus(DOCS, "volume.jsonl", extra_lines=MALFORMED_LINES)
    spec = {"source": "jsonl:volume.jsonl", "store": STORE, "batch_size": 10}
    job = create_job(JobSpec.parse({**spec, "name": "volume", "max_failed_ratio": 1.0}))
    try:
        # 1. The job's page counts the failures by type, live, as the worker records them.
        log_in(page, stack, viewer)
        page.goto(f"{stack.base_url}/jobs/{job.pk}/")
        card = page.locator(f"#job-failures-{job.pk}")
        expect(page.locator(f"#job-progress-{job.pk}")).to_have_attribute(
            "data-status", "completed", timeout=DEADLINE_MS
        )
        permanent = card.locator('li[data-error-type="PermanentError"] .count')
        malformed = card.locator('li[data-error-type="MalformedRecord"] .count')
        expect(permanent).to_have_text("3", timeout=10_000)
        expect(malformed).to_have_text("2")
        live = panel_text(page, f"#job-failures-{job.pk}")
        page.reload()
        assert panel_text(page, f"#job-failures-{job.pk}") == live

        # 2. A type's count opens the failures page filtered by it.
        card.locator('li[data-error-type="PermanentError"] a').click()
        page.wait_for_url(re.compile(rf"/jobs/{job.pk}/failures/\?type=PermanentError$"))
        rows = page.locator("tr.failure-row")
        expect(rows).to_have_count(3)
        expect(page.locator("tr.failure-row .source-link code")).to_have_text(list(POISONED))

        # 3. The preview shows the start of the failing document's text.
        doc7 = rows.filter(has_text="doc-7")
        expect(doc7.locator(".preview-text")).to_contain_text("document 7:")
        expect(doc7).to_contain_text("line 8")

        # 4. The filter form (htmx, URL kept) narrows to the malformed records.
        page.goto(f"{stack.base_url}/jobs/{job.pk}/failures/")
        expect(rows).to_have_count(5)
        page.select_option("select[name=type]", "MalformedRecord")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(re.compile(r"/failures/\?type=MalformedRecord&transient=$"))
        expect(rows).to_have_count(2)
        expect(rows.first).to_contain_text("fix in the source")
        expect(rows.first.locator(".preview-text")).to_have_text("{broken json")

        # 5. The CSV of the filtered list holds exactly those; the full one every failure.
        with page.expect_download() as filtered_download:
            page.get_by_role("link", name="Download CSV").click()
        filtered = read_csv(filtered_download.value.path())
        assert [r["locator"] for r in filtered] == ["line 61", "line 62"]
        page.goto(f"{stack.base_url}/jobs/{job.pk}/")
        with page.expect_download() as full_download:
            page.locator(f"#job-failures-{job.pk}").get_by_role("link", name="Download CSV").click()
        full = read_csv(full_download.value.path())
        assert sorted(r["doc_ids"] for r in full) == sorted(
            [*POISONED, "line 61", "no-text (line 62)"]
        )
        assert {r["preview"] for r in full if r["doc_ids"] == "doc-23"} == {
            json.loads(line_of(data_dir / "volume.jsonl", 24))["text"][:300]
        }

        # 6. A document id links to its line in the source, marked, with its neighbours.
        page.goto(f"{stack.base_url}/jobs/{job.pk}/failures/?type=PermanentError")
        page.locator("a.source-link", has_text="doc-23").click()
        page.wait_for_url(re.compile(rf"/jobs/{job.pk}/failures/\d+/source/$"))
        failing = page.locator("tr.source-line.failing")
        expect(failing).to_have_attribute("data-line", "24")
        expect(failing).to_contain_text('"id": "doc-23"')
        expect(page.locator("tr.source-line")).to_have_count(5)
        expect(page.locator(".source-problem")).to_have_count(0)
    except Exception:
        print(stack.logs())  # noqa: T201 - the servers' side of a failure, in pytest's report
        raise


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))


def line_of(corpus: Path, number: int) -> str:
    return corpus.read_text(encoding="utf-8").splitlines()[number - 1]
