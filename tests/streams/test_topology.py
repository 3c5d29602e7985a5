"""The transform API without a log: what a stream turns an event into, the
outputs' metadata and their Kafka messages, and the declarations refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from eventsource import ConfigurationError, EncodeError, Event, ForeignTopic, merge, stream
from eventsource.bus import wire
from eventsource.events.codec import EventCodec, stamp
from eventsource.streams.output import message, stamped
from tests.streams.apps import StDeposited, StLargeMovement, StMovement, StNoted, StWithdrawn

T0 = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def recorded(event: Event, aggregate_id: str = "acc-1", version: int = 3) -> Event:
    """`event` as read from the log: with the metadata the store stamps."""
    stamp(
        event,
        event_id=uuid.uuid4(),
        aggregate_id=aggregate_id,
        aggregate_type="account",
        version=version,
        position=41,
        occurred_at=T0,
        correlation_id=uuid.uuid4(),
    )
    return event


def test_the_seeds_one_liner_reads_as_one_line() -> None:
    def metamorphose(event: StDeposited) -> StMovement:
        return StMovement(amount=event.amount, seq=event.version)

    butterflies = stream("zoo.account", StDeposited).map(metamorphose).to("zoo.movement")
    [(key, out)] = butterflies.apply("zoo.account", recorded(StDeposited(amount=5)))
    assert key == "acc-1"
    assert out == StMovement(amount=5, seq=3)
    assert butterflies.name == "zoo.movement"
    assert butterflies.topics == ["zoo.account"]


def test_filter_flat_map_and_key_by_compose_in_order() -> None:
    transform = (
        stream("bank.account", StDeposited, StWithdrawn)
        .filter(lambda e: e.amount > 1)
        .flat_map(lambda e: [StMovement(amount=e.amount, seq=1), StMovement(amount=-1, seq=2)])
        .key_by(lambda m: f"seq-{m.seq}")
        .to("bank.movement")
    )
    assert transform.apply("bank.account", recorded(StDeposited(amount=1))) == []
    out = transform.apply("bank.account", recorded(StWithdrawn(amount=4)))
    assert [(k, e.amount) for k, e in out] == [("seq-1", 4), ("seq-2", -1)]
    # Types the stream does not name, and other topics, give nothing.
    assert transform.apply("bank.account", recorded(StNoted(text="x"))) == []
    assert transform.apply("bank.other", recorded(StDeposited(amount=9))) == []


def test_merge_keeps_each_streams_own_steps() -> None:
    deposits = stream("bank.account", StDeposited).map(lambda e: StMovement(amount=e.amount, seq=0))
    withdrawals = stream("shop.till", StWithdrawn).map(
        lambda e: StMovement(amount=-e.amount, seq=0)
    )
    transform = merge(deposits, withdrawals).filter(lambda m: m.amount != 0).to("bank.movement")
    assert transform.topics == ["bank.account", "shop.till"]
    assert transform.types() == (StDeposited, StWithdrawn)
    [(_, a)] = transform.apply("bank.account", recorded(StDeposited(amount=3)))
    [(_, b)] = transform.apply("shop.till", recorded(StWithdrawn(amount=3)))
    assert (a.amount, b.amount) == (3, -3)


def test_outputs_are_stamped_from_their_cause() -> None:
    transform = stream("bank.account", StDeposited).to("bank.copy", name="copier")
    cause = recorded(StDeposited(amount=7))
    [out] = stamped(transform, transform.apply("bank.account", cause), cause)
    assert out is not cause  # a copy: the input event is left alone
    assert cause.aggregate_type == "account"
    assert out.amount == 7
    assert out.aggregate_id == "acc-1"
    assert out.aggregate_type == "copy"
    assert out.causation_id == cause.event_id
    assert out.correlation_id == cause.correlation_id
    assert out.occurred_at == T0
    assert (out.version, out.position) == (0, 0)
    [again] = stamped(transform, transform.apply("bank.account", cause), cause)
    assert again.event_id == out.event_id  # the same input always gives the same id


def test_an_output_message_reads_back_as_the_event() -> None:
    transform = (
        stream("bank.account", StDeposited)
        .flat_map(lambda e: [StMovement(amount=1, seq=1), StLargeMovement(amount=99, seq=1)])
        .to("bank.movement")
    )
    cause = recorded(StDeposited(amount=7))
    outputs = stamped(transform, transform.apply("bank.account", cause), cause)
    assert len({o.event_id for o in outputs}) == 2
    codec = EventCodec()
    for out in outputs:
        key, value, headers, timestamp = message(out)
        assert key == b"acc-1"
        assert timestamp == wire.milliseconds(T0)
        record = wire.decode("bank.movement", 0, 5, key, value, headers)  # type: ignore[arg-type]
        assert record.position == 0
        decoded = codec.decode(record)
        assert decoded == out
        assert decoded.causation_id == cause.event_id


def test_an_output_without_a_key_is_refused() -> None:
    transform = stream("bank.account", StDeposited).key_by(lambda e: "x").to("bank.copy")
    cause = recorded(StDeposited(amount=7))
    with pytest.raises(EncodeError, match="key_by"):
        stamped(transform, [("", cause)], cause)


def test_functions_must_return_events() -> None:
    transform = stream("bank.account", StDeposited).map(lambda e: {"amount": 1}).to("bank.copy")  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="must return Event instances"):
        transform.apply("bank.account", recorded(StDeposited(amount=7)))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: stream("no-dot", StDeposited), "<context>.<aggregate type>"),
        (lambda: stream("bank.account"), "needs the event classes"),
        (lambda: stream("bank.account", dict), "takes Event subclasses"),  # type: ignore[arg-type]
        (lambda: stream("bank.account", StDeposited).to("nodot"), "'<context>.<name>'"),
        (lambda: stream("bank.account", StDeposited).to("bank.account"), "its own output"),
        (lambda: stream("bank.account", StDeposited).to("bank.x", name="Bad Name"), "name"),
        (
            lambda: stream("bank.account", StDeposited).to("bank.x", on_failure="ignore"),
            "on_failure",
        ),
        (merge, "at least one stream"),
    ],
)
def test_declarations_that_cannot_run_are_refused(build, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build()


class Contact(Event):
    event_type = "st.topology_contact"

    name: str


def test_a_foreign_topic_is_read_as_its_model() -> None:
    contacts = ForeignTopic("crm.contacts", Contact)
    transform = stream(contacts).map(lambda c: c).to("crm.copies")
    assert transform.types() == (Contact,)
    assert transform.topics == ["crm.contacts"]
    with pytest.raises(ConfigurationError, match="is read as Contact"):
        stream(contacts, StDeposited)
