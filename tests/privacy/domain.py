"""A small context with personal data: members who join, move and leave notes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Column, MetaData, String, Table

from eventsource import (
    Aggregate,
    Event,
    PersonalData,
    PersonalDataForgotten,
    Projection,
    View,
    handles,
    on,
)


class Home(BaseModel):
    model_config = ConfigDict(frozen=True)

    street: str
    city: str


class MemberJoined(Event):
    name: Annotated[str, PersonalData()]
    home: Annotated[Home | None, PersonalData()]
    plan: str


class MemberMoved(Event):
    home: Annotated[Home | None, PersonalData()]


class NoteLeft(Event):
    """Personal data of another subject than the aggregate: the author's."""

    author_id: str
    text: Annotated[str, PersonalData(subject="author_id")]


class Member(Aggregate):
    name: str = ""
    home: Home | None = None
    plan: str = ""

    @classmethod
    def join(cls, member_id: str, name: str, street: str, city: str) -> Member:
        member = cls(member_id)
        member.trigger(MemberJoined(name=name, home=Home(street=street, city=city), plan="gold"))
        return member

    def move(self, street: str, city: str) -> None:
        self.trigger(MemberMoved(home=Home(street=street, city=city)))

    @on(MemberJoined)
    def _joined(self, event: MemberJoined) -> None:
        self.name, self.home, self.plan = event.name, event.home, event.plan

    @on(MemberMoved)
    def _moved(self, event: MemberMoved) -> None:
        self.home = event.home


class Board(Aggregate):
    """A notice board: notes by members, sealed with each author's key."""

    notes: list[str] = []

    def leave(self, author_id: str, text: str) -> None:
        self.trigger(NoteLeft(author_id=author_id, text=text))

    @on(NoteLeft)
    def _left(self, event: NoteLeft) -> None:
        self.notes.append(event.text)


metadata = MetaData()


class Directory(Projection):
    """Another context's copy of where members live; drops a forgotten member's row."""

    name = "privacy.directory"
    topics: list[str] = []  # set per test: "<context>.member", "<context>.personal_data"

    members = Table(
        "privacy_directory",
        metadata,
        Column("member_id", String(100), primary_key=True),
        Column("name", String(200), nullable=False),
        Column("street", String(200)),
        Column("city", String(100)),
    )

    @handles(MemberJoined)
    def _joined(self, event: MemberJoined, view: View) -> None:
        home = event.home
        view.upsert(
            self.members,
            member_id=event.aggregate_id,
            name=event.name,
            street=home.street if home else None,
            city=home.city if home else None,
        )

    @handles(MemberMoved)
    def _moved(self, event: MemberMoved, view: View) -> None:
        home = event.home
        view.update(
            self.members,
            event.aggregate_id,
            street=home.street if home else None,
            city=home.city if home else None,
        )

    @handles(PersonalDataForgotten)
    def _forgotten(self, event: PersonalDataForgotten, view: View) -> None:
        view.delete(self.members, event.aggregate_id)


def directory_for(context: str) -> type[Directory]:
    """`Directory` reading `context`'s topics."""
    return type(
        "ContextDirectory",
        (Directory,),
        {"topics": [f"{context}.member", f"{context}.personal_data"]},
    )


class Roster(Projection):
    """Members' names, copied without handling the notice: a rebuild after a
    forget shows the placeholder."""

    name = "privacy.roster"
    topics: list[str] = []

    names = Table(
        "privacy_roster",
        metadata,
        Column("member_id", String(100), primary_key=True),
        Column("name", String(200), nullable=False),
    )

    @handles(MemberJoined)
    def _joined(self, event: MemberJoined, view: View) -> None:
        view.upsert(self.names, member_id=event.aggregate_id, name=event.name)


def roster_for(context: str) -> type[Roster]:
    """`Roster` reading `context`'s members."""
    return type("ContextRoster", (Roster,), {"topics": [f"{context}.member"]})
