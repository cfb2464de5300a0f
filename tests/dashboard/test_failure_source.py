"""A failure's record in its source: the JSONL line and its neighbours, or the start of a file;
read only inside the allowed roots, and a clear message (never a 500) when it is gone or changed."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from reindexer.documents import MALFORMED_ERROR
from reindexer.models import BatchFailure, ReindexJob
from reindexer.sources.excerpt import FILE_CHARS, LINE_CHARS

pytestmark = pytest.mark.django_db

MakeJob = Callable[..., ReindexJob]


def source_url(failure: BatchFailure) -> str:
    return f"/jobs/{failure.job_id}/failures/{failure.pk}/source/"


def shown_lines(html: str) -> list[tuple[int, bool, str]]:
    """(line number, failing, text) of each line the page shows."""
    found = re.findall(
        r'<tr class="source-line( failing)?"[^>]*data-line="(\d+)">'
        r'.*?<pre class="wrap">(.*?)</pre>',
        html,
        re.S,
    )
    return [(int(number), bool(failing), text) for failing, number, text in found]


def get(client: Client, failure: BatchFailure) -> str:
    response = client.get(source_url(failure))
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def jsonl_job(make_corpus: Callable[..., Path], make_job: MakeJob) -> ReindexJob:
    make_corpus(10)
    return make_job(status="completed", processed=10, failed=1)


def test_source__shows_the_failing_line_with_two_lines_around_it(
    viewer_client: Client, jsonl_job: ReindexJob, add_failure
) -> None:
    failure = add_failure(jsonl_job, doc_ids=["doc-5"], locator="line 6")
    lines = shown_lines(get(viewer_client, failure))
    assert [(n, failing) for n, failing, _ in lines] == [
        (4, False),
        (5, False),
        (6, True),
        (7, False),
        (8, False),
    ]
    assert json.loads(lines[2][2].replace("&quot;", '"'))["id"] == "doc-5"


def test_source__the_first_line_has_no_lines_before_it(
    viewer_client: Client, jsonl_job: ReindexJob, add_failure
) -> None:
    failure = add_failure(jsonl_job, doc_ids=["doc-0"], locator="line 1")
    html = get(viewer_client, failure)
    assert [(n, failing) for n, failing, _ in shown_lines(html)] == [
        (1, True),
        (2, False),
        (3, False),
    ]
    assert "has changed" not in html


def test_source__a_malformed_line_without_an_id_is_found_by_its_start(
    viewer_client: Client, make_corpus, make_job, add_failure
) -> None:
    make_corpus(3, extra_lines=["{broken"])
    job = make_job(status="completed", processed=4, failed=1)
    failure = add_failure(
        job, doc_ids=["line 4"], locator="line 4", error_type=MALFORMED_ERROR, preview="{broken"
    )
    html = get(viewer_client, failure)
    assert (4, True, "{broken") in shown_lines(html)
    assert "has changed" not in html


def test_source__a_malformed_line_with_an_id_is_found_by_that_id(
    viewer_client: Client, jsonl_job: ReindexJob, add_failure
) -> None:
    failure = add_failure(
        jsonl_job, doc_ids=["doc-2 (line 3)"], locator="line 3", error_type=MALFORMED_ERROR
    )
    assert "has changed" not in get(viewer_client, failure)


def test_source__a_line_that_now_holds_another_record_says_the_file_changed(
    viewer_client: Client, jsonl_job: ReindexJob, add_failure
) -> None:
    failure = add_failure(jsonl_job, doc_ids=["doc-5"], locator="line 7")
    html = get(viewer_client, failure)
    assert "The file has changed: line 7 no longer holds this record." in html
    assert any(n == 7 and failing for n, failing, _ in shown_lines(html))


def test_source__a_line_past_the_end_says_the_file_changed(
    viewer_client: Client, jsonl_job: ReindexJob, add_failure
) -> None:
    failure = add_failure(jsonl_job, doc_ids=["doc-50"], locator="line 51")
    assert "The file has changed: it has no line 51 any more." in get(viewer_client, failure)


def test_source__a_deleted_file_is_a_message_not_an_error(
    viewer_client: Client, jsonl_job: ReindexJob, add_failure, data_dir: Path
) -> None:
    failure = add_failure(jsonl_job, doc_ids=["doc-5"], locator="line 6")
    (data_dir / "docs.jsonl").unlink()
    html = get(viewer_client, failure)
    assert "The source cannot be read any more" in html
    assert shown_lines(html) == []


def test_source__a_file_outside_the_allowed_roots_now_is_not_read(
    viewer_client: Client,
    make_corpus,
    make_job,
    add_failure,
    settings: Any,
    tmp_path: Path,
) -> None:
    job = make_job(f"jsonl:{make_corpus(10)}", status="completed", processed=10, failed=1)
    failure = add_failure(job, doc_ids=["doc-5"], locator="line 6")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, source_roots=(elsewhere,))
    html = get(viewer_client, failure)
    assert "outside the allowed roots" in html
    assert shown_lines(html) == []


def test_source__a_failure_without_a_locator_says_so(
    viewer_client: Client, jsonl_job: ReindexJob, add_failure
) -> None:
    failure = add_failure(jsonl_job, doc_ids=["doc-5"], locator="")
    assert "does not say where its record is" in get(viewer_client, failure)


def test_source__a_long_line_is_cut(
    viewer_client: Client, data_dir: Path, make_job, add_failure
) -> None:
    (data_dir / "long.jsonl").write_text(
        json.dumps({"id": "long", "text": "y" * (LINE_CHARS * 2)}) + "\n", encoding="utf-8"
    )
    job = make_job("jsonl:long.jsonl", status="completed", processed=1, failed=1)
    failure = add_failure(job, doc_ids=["long"], locator="line 1")
    ((_, _, text),) = shown_lines(get(viewer_client, failure))
    assert "(cut)" in text
    assert "y" * (LINE_CHARS - 40) in text and "y" * LINE_CHARS not in text


@pytest.fixture
def folder_job(data_dir: Path, make_job: MakeJob) -> ReindexJob:
    (data_dir / "notes" / "deep").mkdir(parents=True)
    (data_dir / "notes" / "deep" / "b.md").write_text("beta " * 2000, encoding="utf-8")
    return make_job("directory:notes", status="completed", processed=1, failed=1)


def test_source__a_directory_failure_shows_the_start_of_its_file(
    viewer_client: Client, folder_job: ReindexJob, add_failure
) -> None:
    failure = add_failure(folder_job, doc_ids=["deep/b.md"], locator="deep/b.md", preview="beta ")
    html = get(viewer_client, failure)
    ((_, failing, text),) = shown_lines(html)
    assert failing and text.startswith("beta beta") and "(cut)" in text
    assert len(text.split("<span")[0]) == FILE_CHARS
    assert "has changed" not in html


def test_source__a_directory_file_rewritten_since_says_the_file_changed(
    viewer_client: Client, folder_job: ReindexJob, add_failure, data_dir: Path
) -> None:
    failure = add_failure(folder_job, doc_ids=["deep/b.md"], locator="deep/b.md", preview="beta ")
    (data_dir / "notes" / "deep" / "b.md").write_text("gamma", encoding="utf-8")
    assert "it no longer starts with the failing text" in get(viewer_client, failure)


def test_source__a_locator_that_climbs_out_of_the_folder_is_refused(
    viewer_client: Client, folder_job: ReindexJob, add_failure, data_dir: Path
) -> None:
    (data_dir / "secret.txt").write_text("do not show", encoding="utf-8")
    failure = add_failure(folder_job, doc_ids=["x"], locator="../secret.txt")
    html = get(viewer_client, failure)
    assert "must not contain &#x27;..&#x27;" in html
    assert "do not show" not in html


def test_source__a_symbolic_link_in_place_of_the_file_is_not_followed(
    viewer_client: Client, folder_job: ReindexJob, add_failure, data_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("outside the roots", encoding="utf-8")
    target = data_dir / "notes" / "deep" / "b.md"
    target.unlink()
    target.symlink_to(outside)
    failure = add_failure(folder_job, doc_ids=["deep/b.md"], locator="deep/b.md")
    html = get(viewer_client, failure)
    assert "symbolic link" in html
    assert "outside the roots" not in html


def test_source__needs_the_view_permission_and_the_failures_own_job(
    client: Client, viewer_client: Client, jsonl_job: ReindexJob, make_job, add_failure
) -> None:
    failure = add_failure(jsonl_job, doc_ids=["doc-5"], locator="line 6")
    other = make_job(status="completed", processed=5, failed=0)
    assert viewer_client.get(f"/jobs/{other.pk}/failures/{failure.pk}/source/").status_code == 404
    assert viewer_client.post(source_url(failure)).status_code == 405
    client.logout()
    assert client.get(source_url(failure)).status_code == 302
