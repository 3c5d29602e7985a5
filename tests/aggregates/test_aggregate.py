"""Aggregates in memory: handlers, versions, pending events, metadata, declarations."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from eventsource import (
    Aggregate,
    ConfigurationError,
    Event,
    InvalidAggregateId,
    MissingHandler,
    caused_by,
    on,
)


class AggOpened(Event):
    event_type = "agg.opened"

    owner: str


class AggDeposited(Event):
    event_type = "agg.deposited"

    amount: Decimal


class AggNoted(Event):
    event_type = "agg.noted"

    note: str


class AggUrgentNoted(AggNoted):
    event_type = "agg.urgent_noted"


class AggUnhandled(Event):
    event_type = "agg.unhandled"


class AggRejected(Event):
    event_type = "agg.rejected"


class AggAccount(Aggregate):
    owner: str = ""
    balance: Decimal = Decimal("0")
    notes: list[str] = []
    by_owner: dict[str, list[Decimal]] = {}

    @classmethod
    def open(cls, account_id: str, owner: str) -> AggAccount:
        account = cls(account_id)
        account.trigger(AggOpened(owner=owner))
        return account

    def deposit(self, amount: Decimal) -> None:
        self.trigger(AggDeposited(amount=amount))

    @on(AggOpened)
    def _opened(self, event: AggOpened) -> None:
        self.owner = event.owner

    @on(AggDeposited)
    def _deposited(self, event: AggDeposited) -> None:
        self.balance += event.amount
        self.by_owner.setdefault(self.owner, []).append(event.amount)

    @on(AggNoted)
    def _noted(self, event: AggNoted) -> None:
        self.notes.append(event.note)

    @on(AggRejected)
    def _rejected(self, event: AggRejected) -> None:
        raise ValueError("this account refuses the event")


def test_trigger_applies_the_handler_and_queues_the_event() -> None:
    account = AggAccount.open("acc-1", "ada")
    account.deposit(Decimal("10.50"))

    assert account.owner == "ada"
    assert account.balance == Decimal("10.50")
    assert account.version == 2
    assert [e.event_type for e in account.pending_events] == ["agg.opened", "agg.deposited"]
    assert [e.version for e in account.pending_events] == [1, 2]
    assert isinstance(account.pending_events, tuple)


def test_triggered_events_are_stamped_with_metadata() -> None:
    before = datetime.now(UTC)
    account = AggAccount.open("acc-2", "bob")
    account.deposit(Decimal(1))
    after = datetime.now(UTC)

    first, second = account.pending_events
    for event in (first, second):
        assert event.aggregate_id == "acc-2"
        assert event.aggregate_type == "agg_account"
        assert event.is_recorded
        assert event.position == 0
        assert event.occurred_at.utcoffset() == timedelta(0)
        assert before <= event.occurred_at <= after
        # A command's first event starts its own correlation.
        assert event.correlation_id == event.event_id
        assert event.causation_id is None
    assert first.event_id != second.event_id
    assert UUID(int=0) not in (first.event_id, second.event_id)
    # Time-ordered ids: the events table's unique index on them stays compact.
    assert first.event_id.version == second.event_id.version == 7


def test_the_event_given_to_trigger_is_not_changed() -> None:
    event = AggNoted(note="hello")
    account = AggAccount("acc-3")
    account.trigger(event)
    account.trigger(event)

    assert not event.is_recorded
    assert event.aggregate_id == ""
    assert [e.version for e in account.pending_events] == [1, 2]
    assert account.notes == ["hello", "hello"]


def test_id_version_and_pending_events_are_read_only() -> None:
    account = AggAccount.open("acc-4", "cy")
    with pytest.raises(AttributeError):
        account.version = 10  # type: ignore[misc]
    with pytest.raises(AttributeError):
        account.id = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        account.pending_events = ()  # type: ignore[misc]
    assert (account.id, account.version, len(account.pending_events)) == ("acc-4", 1, 1)


def test_an_event_without_handler_is_missing_handler_at_trigger_time() -> None:
    account = AggAccount.open("acc-5", "di")
    with pytest.raises(MissingHandler, match=r"AggAccount has no @on\(AggUnhandled\) handler"):
        account.trigger(AggUnhandled())
    assert isinstance(MissingHandler("x"), TypeError)
    assert account.version == 1
    assert len(account.pending_events) == 1


def test_a_handler_that_raises_leaves_version_and_pending_events_alone() -> None:
    account = AggAccount.open("acc-6", "ed")
    with pytest.raises(ValueError, match="refuses"):
        account.trigger(AggRejected())
    assert account.version == 1
    assert [type(e) for e in account.pending_events] == [AggOpened]
    account.deposit(Decimal(2))
    assert [e.version for e in account.pending_events] == [1, 2]


def test_a_handler_for_a_base_event_class_handles_its_subclasses() -> None:
    account = AggAccount("acc-7")
    account.trigger(AggUrgentNoted(note="now"))
    assert account.notes == ["now"]
    assert type(account.pending_events[0]) is AggUrgentNoted


def test_mutable_defaults_are_not_shared_between_instances() -> None:
    first = AggAccount.open("acc-8", "fa")
    first.trigger(AggNoted(note="only mine"))
    first.deposit(Decimal(3))
    second = AggAccount("acc-9")

    assert second.notes == []
    assert second.by_owner == {}
    assert AggAccount.notes == []
    assert AggAccount.by_owner == {}
    assert first.by_owner == {"fa": [Decimal(3)]}


def test_caused_by_sets_causation_and_carries_correlation() -> None:
    order = AggAccount.open("acc-10", "gi")
    cause = order.pending_events[0]

    reaction = AggAccount("acc-11")
    with caused_by(cause):
        reaction.trigger(AggNoted(note="reacting"))
        effect = reaction.pending_events[-1]
        with caused_by(effect):
            reaction.trigger(AggNoted(note="reacting again"))
        reaction.trigger(AggNoted(note="back to the first cause"))
    reaction.trigger(AggNoted(note="outside"))

    first, nested, third, outside = reaction.pending_events
    assert first.causation_id == cause.event_id
    assert first.correlation_id == cause.correlation_id == cause.event_id
    assert nested.causation_id == first.event_id
    assert nested.correlation_id == cause.correlation_id
    assert third.causation_id == cause.event_id
    assert outside.causation_id is None
    assert outside.correlation_id == outside.event_id


def test_caused_by_starts_a_correlation_from_an_event_without_one() -> None:
    cause = AggNoted(note="from elsewhere").model_copy(update={"event_id": uuid4()})
    account = AggAccount("acc-12")
    with caused_by(cause):
        account.trigger(AggNoted(note="x"))
    assert account.pending_events[0].correlation_id == cause.event_id
    assert account.pending_events[0].causation_id == cause.event_id


def test_caused_by_is_reset_after_an_error_and_does_not_leak_to_other_threads() -> None:
    cause = AggAccount.open("acc-13", "ha").pending_events[0]
    account = AggAccount("acc-14")
    from_thread: list[UUID | None] = []

    def other_thread() -> None:
        other = AggAccount("acc-15")
        other.trigger(AggNoted(note="y"))
        from_thread.append(other.pending_events[0].causation_id)

    def failing_reaction() -> None:
        with caused_by(cause):
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
            assert not thread.is_alive(), "a thread the test started is still running"
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        failing_reaction()
    account.trigger(AggNoted(note="after"))

    assert from_thread == [None]
    assert account.pending_events[0].causation_id is None


# -- declarations --------------------------------------------------------------


def test_type_name_defaults_to_the_class_name_in_snake_case() -> None:
    class OrderLine(Aggregate):
        pass

    class HTTPRequest(Aggregate):
        pass

    class Order2Item(Aggregate):
        pass

    class Named(Aggregate, type_name="custom-name_1"):
        pass

    class NamedChild(Named):
        pass

    assert OrderLine.type_name == "order_line"
    assert HTTPRequest.type_name == "http_request"
    assert Order2Item.type_name == "order2_item"
    assert Named.type_name == "custom-name_1"
    assert NamedChild.type_name == "named_child"
    assert AggAccount.type_name == "agg_account"


@pytest.mark.parametrize(
    "type_name", ["Order", "has space", "9lives", "", "a:b", "a.b", "x" * 101, "ordér"]
)
def test_invalid_type_names_are_configuration_errors(type_name: str) -> None:
    with pytest.raises(ConfigurationError, match="aggregate type name"):

        class Bad(Aggregate, type_name=type_name):
            pass


@pytest.mark.parametrize("every", [0, -1, 2.5])
def test_snapshot_every_must_be_a_positive_int(every: object) -> None:
    with pytest.raises(ConfigurationError, match="snapshot_every"):

        class Bad(Aggregate, snapshot_every=every):  # type: ignore[arg-type]
            pass


def test_two_handlers_for_one_event_type_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"two @on\(AggNoted\) handlers"):

        class Bad(Aggregate):
            @on(AggNoted)
            def _first(self, event: AggNoted) -> None:
                pass

            @on(AggOpened, AggNoted)
            def _second(self, event: Event) -> None:
                pass


def test_on_needs_event_classes() -> None:
    with pytest.raises(ConfigurationError, match="at least one"):
        on()
    with pytest.raises(ConfigurationError, match="Event subclasses"):
        on(str)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Event subclasses"):
        on(AggNoted(note="an instance"))  # type: ignore[arg-type]


def test_subclasses_inherit_handlers_and_may_add_their_own() -> None:
    class AggSavings(AggAccount):
        interest: Decimal = Decimal("0")

        @on(AggUnhandled)
        def _interest(self, event: AggUnhandled) -> None:
            self.interest += 1

    savings = AggSavings("sav-1")
    savings.trigger(AggOpened(owner="io"))
    savings.trigger(AggUnhandled())
    assert (savings.owner, savings.interest, savings.version) == ("io", Decimal(1), 2)
    with pytest.raises(MissingHandler):
        AggAccount("acc-16").trigger(AggUnhandled())


@pytest.mark.parametrize(
    "bad_id", ["", " ", "\t\n", "x" * 201, 42, None, b"bytes", "nul\x00inside", "lone\ud800"]
)
def test_invalid_ids_are_refused(bad_id: object) -> None:
    with pytest.raises(InvalidAggregateId):
        AggAccount(bad_id)  # type: ignore[arg-type]


def test_ids_up_to_200_characters_are_accepted() -> None:
    assert AggAccount("x" * 200).id == "x" * 200
    assert AggAccount("订单-1").id == "订单-1"


def test_repr_shows_type_id_and_version() -> None:
    assert repr(AggAccount.open("acc-17", "jo")) == "<AggAccount id='acc-17' version=1>"
