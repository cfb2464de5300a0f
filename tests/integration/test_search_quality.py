"""The issue's end-to-end check: a real job with `--embedder minilm` on each store (sqlite-vec,
pgvector, Milvus), then `reindex search --embedder minilm --json` for a paraphrase of each
document finds that document in the top 5.

Every paraphrase must find its document (no share below 100%): the 40 topics are far apart and
each paraphrase rewords its sentence, so a miss means a broken pipeline (wrong vectors stored,
ids crossed, distances reversed), not a hard query. The worker and the searches run in this
process, so the model loads once for the session.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from reindexer.models import JobStatus, ReindexJob
from tests.milvus_server import MilvusServer
from tests.pgvector_server import PgvectorServer

pytestmark = [pytest.mark.backends, pytest.mark.django_db(transaction=True)]

TOP = 5
# (document, a paraphrase of it written independently of the corpus's wording)
PAIRS = [
    (
        "The cat slept all afternoon on the warm windowsill.",
        "A kitten napped for hours in the sunny window.",
    ),
    (
        "Interest rates were raised by the central bank to fight inflation.",
        "To curb rising prices, the monetary authority hiked borrowing costs.",
    ),
    (
        "She baked a loaf of sourdough bread in the oven.",
        "A homemade fermented-dough loaf came out of her oven.",
    ),
    (
        "The football team won the championship final on penalties.",
        "After a shootout, the soccer club lifted the cup.",
    ),
    (
        "Volcanoes erupt when magma rises through the earth's crust.",
        "Molten rock pushing up through the ground causes eruptions.",
    ),
    (
        "He forgot his umbrella and got soaked in the rain.",
        "Without an umbrella, he was drenched by the downpour.",
    ),
    (
        "The new smartphone has a faster processor and a better camera.",
        "The latest mobile phone offers quicker chips and improved photos.",
    ),
    (
        "Doctors recommend drinking plenty of water every day.",
        "Physicians advise staying well hydrated daily.",
    ),
    (
        "The train to Paris was delayed by two hours.",
        "Our rail journey to the French capital ran two hours late.",
    ),
    (
        "Bees pollinate flowers while collecting nectar.",
        "While gathering nectar, honeybees fertilise blossoms.",
    ),
    (
        "The company reported record profits this quarter.",
        "The firm announced its highest earnings ever for the period.",
    ),
    (
        "A violinist performed a concerto with the orchestra.",
        "The symphony accompanied a fiddle soloist in a concerto.",
    ),
    (
        "The astronauts docked with the space station.",
        "The crew's spacecraft linked up with the orbiting laboratory.",
    ),
    (
        "Regular exercise strengthens the heart and lungs.",
        "Working out often improves cardiovascular and respiratory fitness.",
    ),
    (
        "The museum opened an exhibition of ancient Egyptian artefacts.",
        "A new show of relics from the pharaohs' era opened at the gallery.",
    ),
    (
        "Heavy snowfall closed the mountain pass overnight.",
        "A blizzard blocked the alpine road during the night.",
    ),
    (
        "The programmer fixed a bug that crashed the server.",
        "A developer repaired the defect that brought the backend down.",
    ),
    (
        "Children played in the park until sunset.",
        "The kids stayed at the playground till the sun went down.",
    ),
    (
        "The recipe calls for two eggs and a cup of flour.",
        "You need a pair of eggs and some flour for this dish.",
    ),
    (
        "Wind turbines generate electricity from moving air.",
        "Windmills produce power from the breeze.",
    ),
    (
        "The judge sentenced the thief to three years in prison.",
        "The court jailed the burglar for a three-year term.",
    ),
    (
        "Coral reefs are threatened by warming oceans.",
        "Rising sea temperatures endanger coral ecosystems.",
    ),
    (
        "He learned to play the guitar by watching online videos.",
        "He taught himself guitar from internet tutorials.",
    ),
    (
        "The election results will be announced tomorrow morning.",
        "Vote counts are due to be published early next day.",
    ),
    (
        "A strong earthquake shook the coastal city.",
        "The seaside town was hit by a powerful tremor.",
    ),
    (
        "The library lends books, films and music for free.",
        "You can borrow novels, movies and albums at no cost from the public library.",
    ),
    (
        "Tomatoes grow best in full sun with regular watering.",
        "Tomato plants thrive with lots of sunlight and steady irrigation.",
    ),
    (
        "The airline cancelled flights because of a pilots' strike.",
        "Flights were grounded as aircrew walked out.",
    ),
    (
        "The detective found fingerprints on the broken glass.",
        "Investigators lifted prints from the shattered window pane.",
    ),
    (
        "Our dog barks loudly whenever the postman arrives.",
        "The puppy makes a racket each time mail is delivered.",
    ),
    (
        "Solar panels were installed on the school roof.",
        "Photovoltaic modules now cover the top of the school building.",
    ),
    (
        "The patient recovered quickly after the surgery.",
        "Following the operation, the sick man healed fast.",
    ),
    (
        "Traffic jams are common on the motorway at rush hour.",
        "The highway is often congested during peak commuting times.",
    ),
    (
        "The chess champion defended her title in a tense match.",
        "The reigning queen of the board game kept her crown after a close contest.",
    ),
    (
        "Glaciers are melting faster than scientists predicted.",
        "Ice sheets are retreating more rapidly than researchers expected.",
    ),
    (
        "The bakery on the corner sells fresh croissants every morning.",
        "Each day at dawn the local patisserie offers warm pastries.",
    ),
    (
        "Students must submit their essays by Friday.",
        "Pupils have until the end of the week to hand in their papers.",
    ),
    (
        "The hikers reached the summit at dawn.",
        "The climbers got to the mountain top as the sun rose.",
    ),
    (
        "A new vaccine protects against the flu virus.",
        "A recently developed jab guards against influenza.",
    ),
    (
        "The spreadsheet calculates the monthly budget automatically.",
        "The worksheet works out household spending each month on its own.",
    ),
]


def _corpus(data_dir: Path) -> str:
    with (data_dir / "quality.jsonl").open("w", encoding="utf-8") as f:
        for n, (text, _) in enumerate(PAIRS):
            f.write(json.dumps({"id": f"doc-{n:02d}", "text": text}) + "\n")
    return "jsonl:quality.jsonl"


def index_and_search(data_dir: Path, store: str, collection: str) -> None:
    out = StringIO()
    call_command(
        "reindex", "start", "--source", _corpus(data_dir), "--embedder", "minilm",
        "--store", store, "--collection", collection, "--batch-size", "16", stdout=out,
    )  # fmt: skip
    job = ReindexJob.objects.get(pk=int(out.getvalue().split()[-1]))
    call_command("reindex_worker", "--burst", "--worker-id", f"quality-{store}")
    job.refresh_from_db()
    assert (job.status, job.processed_docs, job.failed_docs) == (
        JobStatus.COMPLETED, len(PAIRS), 0,
    ), job.error  # fmt: skip
    misses = []
    for n, (text, paraphrase) in enumerate(PAIRS):
        found = StringIO()
        call_command(
            "reindex", "search", "--store", store, "--collection", collection,
            "--embedder", "minilm", "--k", str(TOP), "--json", paraphrase, stdout=found,
        )  # fmt: skip
        ids = [hit["id"] for hit in json.loads(found.getvalue())]
        assert len(ids) == TOP
        if f"doc-{n:02d}" not in ids:
            misses.append((paraphrase, text, ids))
    assert misses == [], f"{len(misses)} of {len(PAIRS)} paraphrases missed their document"


def _name() -> str:
    return f"quality_{uuid.uuid4().hex[:10]}"


def test_search_quality__minilm_on_sqlite_vec(data_dir: Path) -> None:
    index_and_search(data_dir, "sqlite-vec", _name())


def test_search_quality__minilm_on_pgvector(
    data_dir: Path, settings: Any, pgvector_server: PgvectorServer
) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, pgvector_url=pgvector_server.url)
    index_and_search(data_dir, "pgvector", _name())


def test_search_quality__minilm_on_milvus(
    data_dir: Path, settings: Any, milvus_server: MilvusServer
) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, milvus_uri=milvus_server.url)
    index_and_search(data_dir, "milvus", _name())
