"""200 malformed bodies POSTed to /api/jobs/: how many get a 500, and how many create a job.

    .venv/bin/python bench/api_bodies.py [--seed 7] [--count 200]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/reindexer_bench \
        .venv/bin/python bench/api_bodies.py

The bodies are a seeded mix: invalid JSON, bodies that are not objects, wrong types and
out-of-range numbers for every field, NaN and Infinity, huge strings, JSON nested 3,000 deep, a
lone surrogate and a NUL in each string field, unknown fields, bools for ints, objects where
strings go, an empty body and a 10 MB name; the rest are seeded combinations of these. They go
through Django's test client, as an operator's bearer token, into a throwaway test database
(SQLite in a temporary data dir, or a `test_` database beside DATABASE_URL's, dropped at the
end). Every body is invalid, so the figures to report are "500s: 0 of 200" and "jobs created: 0";
one valid body afterwards shows that the same client can create a job.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

URL = "/api/jobs/"
SOURCE = "jsonl:docs.jsonl"
STRING_FIELDS = ("source", "embedder", "store", "collection", "name")
INT_FIELDS = ("batch_size", "max_retries")
FLOAT_FIELDS = ("max_failed_ratio",)
DEEP = 3_000

# Raw JSON spellings json.dumps would not write: Python's json reads them as NaN and infinities.
NAN, INFINITY, MINUS_INFINITY = "NaN", "Infinity", "-Infinity"


def obj(**fields: Any) -> str:
    """A body: the valid source, then `fields` (which may replace it)."""
    return json.dumps({"source": SOURCE, **fields})


def raw_field(field: str, literal: str) -> str:
    """A body whose `field` is the raw JSON `literal` (NaN, deep nesting, ...)."""
    head = "" if field == "source" else f'"source": {json.dumps(SOURCE)}, '
    return "{" + head + json.dumps(field) + ": " + literal + "}"


def string_field_cases(field: str) -> list[str | bytes]:
    return [
        obj(**{field: "\ud800"}),  # a lone surrogate, written as the escape \ud800
        obj(**{field: "bad\udfffend"}),
        obj(**{field: "\u0000"}),
        obj(**{field: "a\u0000b"}),
        obj(**{field: 5}),
        obj(**{field: 1.5}),
        obj(**{field: True}),
        obj(**{field: None}),
        obj(**{field: ["a"]}),
        obj(**{field: {"nested": {"object": "here"}}}),
        obj(**{field: "x" * 100_000}),
        raw_field(field, "[" * DEEP + "]" * DEEP),
        raw_field(field, NAN),
    ]


def number_field_cases(field: str, whole: bool) -> list[str | bytes]:
    cases: list[str | bytes] = [
        obj(**{field: "10"}),
        obj(**{field: True}),
        obj(**{field: False}),
        obj(**{field: None}),
        obj(**{field: [1]}),
        obj(**{field: {"value": 1}}),
        obj(**{field: -1}),
        obj(**{field: 10**30}),
        raw_field(field, "1" + "0" * 400),
        raw_field(field, "1e309"),  # read as inf
        raw_field(field, NAN),
        raw_field(field, INFINITY),
        raw_field(field, MINUS_INFINITY),
    ]
    cases += [obj(**{field: 1.5}), obj(**{field: 1e3})] if whole else [obj(**{field: 1.5})]
    return cases


def body_cases() -> list[str | bytes]:
    """Whole bodies that are wrong before any field is looked at, and cross-field mistakes."""
    return [
        b"",
        "",
        " ",
        "{",
        "}",
        "{}}",
        "{'source': 'jsonl:docs.jsonl'}",
        '{"source": "jsonl:docs.jsonl",}',
        '{"source" "jsonl:docs.jsonl"}',
        "nul",
        "[",
        b"\xff\xfe\x00{",
        b"\xc3\x28",
        b"\x00",
        "\ufeff" + obj(batch_size=0),  # a byte-order mark, which json.loads of bytes skips
        "[]",
        "[1, 2]",
        '"a string"',
        "42",
        "3.14",
        "null",
        "true",
        NAN,
        INFINITY,
        "{}",
        "[" * DEEP + "]" * DEEP,
        '{"a": ' * DEEP + "1" + "}" * DEEP,
        "[" * 100_000 + "]" * 100_000,
        obj(bogus=1),
        obj(__proto__={"admin": True}),
        obj(status="completed"),
        obj(id=1),
        obj(name="x" * 10_000_000),  # 10 MB
        obj(source="jsonl:/etc/passwd"),
        obj(source="jsonl:../outside.jsonl"),
        obj(source="s3:bucket/docs"),
        obj(source="jsonl:missing.jsonl"),
        obj(store="nope"),
        obj(store="flaky(sqlite-vec,transient=2)"),
        obj(embedder="nope"),
        obj(collection="fuzz\n"),
        obj(collection="../escape"),
        obj(batch_size=0, max_retries=21),
        '{"source": "jsonl:docs.jsonl", "source": 5}',  # a duplicate key, the last one wrong
        json.dumps({"source": SOURCE}) + "garbage",
        json.dumps({"embedder": "hashing"}),  # no source
    ]


def fixed_cases() -> list[str | bytes]:
    cases = body_cases()
    for field in STRING_FIELDS:
        cases += string_field_cases(field)
    for field in INT_FIELDS:
        cases += number_field_cases(field, whole=True)
    for field in FLOAT_FIELDS:
        cases += number_field_cases(field, whole=False)
    return cases


BAD_VALUES: list[Any] = [5, True, None, [], {}, "\ud800", "\u0000", "x" * 5_000, -1, 10**20, 0.5]


def random_case(rng: random.Random) -> str | bytes:
    """One to three fields wrong at once, or a body cut short (never valid JSON)."""
    if rng.random() < 0.2:
        text = obj(name="ok", batch_size=10)
        return text[: rng.randrange(1, len(text))]
    fields = rng.sample((*STRING_FIELDS, *INT_FIELDS, *FLOAT_FIELDS), rng.randint(1, 3))
    values = {field: rng.choice(BAD_VALUES) for field in fields}
    # Some of the bad values are valid for some fields (an int batch size of 5): force one miss.
    values[fields[0]] = rng.choice([None, [], {}, "\ud800", "\u0000"])
    return obj(**values)


def malformed_bodies(count: int, seed: int) -> list[str | bytes]:
    rng = random.Random(seed)
    bodies = fixed_cases()
    if len(bodies) > count:
        return rng.sample(bodies, count)
    return bodies + [random_case(rng) for _ in range(count - len(bodies))]


def setup_django(data_dir: Path) -> str:
    """Django on a throwaway test database; returns the name to restore when it is dropped."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="reindexer.settings",
        REINDEXER_DATA_DIR=str(data_dir),
        REINDEXER_SOURCE_ROOTS=str(data_dir),
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    # Django's own test database: created next to the configured one, never the configured one.
    old_name: str = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    return old_name


def operator_token() -> str:
    from django.contrib.auth.models import Permission, User

    from dashboard.models import ApiToken

    user = User.objects.create_user("bench-operator")
    for codename in ("view_reindexjob", "operate_reindexjob"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return ApiToken.issue(user, "bench")[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="reindexer-bench-api-") as tmp:
        data_dir = Path(tmp)
        (data_dir / "docs.jsonl").write_text(json.dumps({"id": "d1", "text": "one"}) + "\n")
        old_name = setup_django(data_dir)
        from django.core.signals import got_request_exception
        from django.db import connection
        from django.test import Client

        from reindexer.models import ReindexJob

        crashes: collections.Counter[str] = collections.Counter()

        def note_crash(sender: Any, request: Any = None, **kwargs: Any) -> None:
            crashes[repr(sys.exc_info()[1])[:120]] += 1

        got_request_exception.connect(note_crash)
        # A 500 is counted here, not re-raised, and its traceback is not printed 200 times.
        logging.getLogger("django.request").setLevel(logging.CRITICAL)
        try:
            client = Client(
                enforce_csrf_checks=True,
                raise_request_exception=False,
                headers={"Authorization": f"Bearer {operator_token()}"},
            )
            statuses: collections.Counter[int] = collections.Counter()
            not_json = 0
            bodies = malformed_bodies(args.count, args.seed)
            for body in bodies:
                response = client.post(URL, body, content_type="application/json")
                statuses[response.status_code] += 1
                not_json += response.headers.get("Content-Type") != "application/json"
            created = ReindexJob.objects.count()
            control = client.post(URL, obj(name="control"), content_type="application/json")

            print(f"database: {connection.vendor} ({connection.settings_dict['NAME']})")
            by_status = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
            print(f"answers by status: {by_status}")
            print(f"500s: {statuses[500]} of {len(bodies)}")
            print(f"answers not application/json: {not_json} of {len(bodies)}")
            print(f"jobs created by the invalid bodies: {created}")
            for crash, n in crashes.most_common():
                print(f"  500 from {crash} x{n}")
            print(f"control: a valid body got {control.status_code} (201 expected)")
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
