"""The story the privacy tests tell: two members, a move, notes on a board."""

from __future__ import annotations

from eventsource import EventStore, Repository
from tests.privacy.domain import Board, Member

ADA = ("Ada Lovelace", "12 St James's Square", "London")
ADA_MOVED = ("4 Ockham Park", "Ockham")
ADA_NOTE = "Ada's note: meet at Ockham on Tuesday"
GRACE = ("Grace Hopper", "1 Navy Yard", "Arlington")
PLAINTEXT = [*ADA, *ADA_MOVED, ADA_NOTE, "Lovelace", "Ockham"]


def tell(store: EventStore) -> None:
    members, boards = Repository(store, Member), Repository(store, Board)
    ada, grace = Member.join("m-ada", *ADA), Member.join("m-grace", *GRACE)
    members.save(ada, grace)
    ada.move(*ADA_MOVED)
    members.save(ada)
    board = Board("b-1")
    board.leave("m-ada", ADA_NOTE)
    board.leave("m-grace", "Grace's note")
    boards.save(board)
