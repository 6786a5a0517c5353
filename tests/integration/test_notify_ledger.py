"""What is news, over the real ledger (SQLite and PostgreSQL) and a real receiver.

A file is named once per event; a lasting condition again only after the quiet
period, and as news again once it cleared and came back; events the user did not
ask for are never sent; nothing is recorded unless it was delivered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from genvault.notify import Event, Messenger, events_from_status
from genvault.store import Store
from tests.fixtures.receiver import Receiver

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CIRCUIT = Event("circuit", "main", "main (geminigen): circuit open (HTTP 503)")
LOST = Event("lost", "17", "main: g-17 image (gone)")


def _messenger(receiver: Receiver, store: Store, events: tuple[str, ...] = ()) -> Messenger:
    return Messenger(
        [receiver.url],
        store,
        events=events or ("at_risk", "lost", "stream", "circuit", "storage", "verify"),
        repeat=timedelta(hours=1),
    )


def test_files_once_conditions_after_the_quiet_period(store: Store, receiver: Receiver) -> None:
    m = _messenger(receiver, store)
    first = m.notify([CIRCUIT, LOST], T0)
    assert first.delivered and len(receiver.messages) == 1
    assert "circuit open" in receiver.messages[0]["message"]
    assert "g-17" in receiver.messages[0]["message"]

    assert not m.notify([CIRCUIT, LOST], T0 + timedelta(minutes=30))
    assert len(receiver.messages) == 1

    later = m.notify([CIRCUIT, LOST], T0 + timedelta(minutes=61))
    assert [e.kind for e in later.events] == ["circuit"], "a lost file was named twice"
    assert len(receiver.messages) == 2


def test_a_condition_that_cleared_is_news_when_it_comes_back(
    store: Store, receiver: Receiver
) -> None:
    m = _messenger(receiver, store)
    m.notify([CIRCUIT], T0)
    assert not m.notify([], T0 + timedelta(minutes=5))  # cleared: forgotten, nothing sent
    back = m.notify([CIRCUIT], T0 + timedelta(minutes=10))
    assert back.delivered and len(receiver.messages) == 2


def test_nothing_is_recorded_unless_delivered(store: Store, receiver: Receiver) -> None:
    m = _messenger(receiver, store)
    receiver.fail_next = 1
    failed = m.notify([LOST], T0)
    assert failed.events and not failed.delivered
    assert store.notified("lost", ["17"]) == {}
    retried = m.notify([LOST], T0 + timedelta(minutes=1))
    assert retried.delivered and len(receiver.messages) == 1
    assert set(store.notified("lost", ["17"])) == {"17"}


def test_only_the_events_asked_for_are_sent(store: Store, receiver: Receiver) -> None:
    m = _messenger(receiver, store, events=("lost",))
    digest = m.notify([CIRCUIT, LOST], T0)
    assert [e.kind for e in digest.events] == ["lost"]
    assert "circuit" not in receiver.messages[0]["message"]


def test_a_digest_names_at_most_25_per_kind_and_counts_the_rest(
    store: Store, receiver: Receiver
) -> None:
    m = _messenger(receiver, store)
    events = [Event("at_risk", str(i), f"main: g-{i} image due soon") for i in range(40)]
    assert m.notify(events, T0).delivered
    body = receiver.messages[0]["message"]
    assert "At risk (deadline close, not archived yet): 40" in body
    assert "g-24 " in body and "g-25 " not in body and "… and 15 more" in body
    assert set(store.notified("at_risk", [str(i) for i in range(40)])) == {
        str(i) for i in range(40)
    }


def _doc(**over: Any) -> dict[str, Any]:
    closed = {"state": "closed", "last_error": None}
    doc: dict[str, Any] = {
        "storage": {"url": "s3://bucket/prefix", "circuit": dict(closed)},
        "accounts": [
            {
                "name": "main",
                "provider": "crowdcomputed",
                "circuit": dict(closed),
                "streams": [
                    {"stream": "text-to-image", "problems": []},
                    {"stream": "upscaler", "problems": ["never walked to the end"]},
                ],
            }
        ],
    }
    doc.update(over)
    return doc


def test_events_from_status_say_conditions_not_noise() -> None:
    assert events_from_status(_doc(), [], []) == []
    doc = _doc()
    doc["storage"]["circuit"] = {"state": "open", "last_error": "PutObject: 503"}
    doc["accounts"][0]["circuit"] = {"state": "half_open", "last_error": None}
    doc["accounts"][0]["streams"][0]["problems"] = [
        "sync error: HTTP 400 workflow rejected",
        "3 missing files (failed or lost)",
    ]
    doc["accounts"][0]["streams"][1]["problems"] = ["last walk incomplete: drift"]
    got = {(e.kind, e.subject): e.text for e in events_from_status(doc, [], [])}
    assert set(got) == {
        ("storage", "storage"),
        ("circuit", "main"),
        ("stream", "main/text-to-image"),
        ("stream", "main/upscaler"),
    }
    assert "missing" not in got[("stream", "main/text-to-image")]
    assert "PutObject: 503" in got[("storage", "storage")]


def test_an_at_risk_file_with_a_guessed_deadline_says_so() -> None:
    row = {
        "id": 1,
        "account": "crowd",
        "external_id": "582079535692914438",
        "role": "result",
        "expires_at": T0,
        "last_error": None,
    }
    guessed = events_from_status(_doc(), [{**row, "expires_source": "assumed"}], [])
    stated = events_from_status(_doc(), [{**row, "expires_source": "provider"}], [])
    assert "(a guessed deadline)" in guessed[0].text
    assert "guess" not in stated[0].text
