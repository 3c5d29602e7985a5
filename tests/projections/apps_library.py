"""A lending library: books lent and returned, loans flagged when overdue.

The source context records `LbBook` events. The `OverdueLoans` reactor, in a
context of its own, schedules an "overdue" deadline for each loan
(`reaction.schedule`, keyed by book), cancels it when the book comes back,
and, when one falls due, records an `LbLoanFlagged` on the loan's `LbLoan`
aggregate with the loan id its deadline carried. A loan flagged twice is two
events on one aggregate; a deadline run with another schedule's payload
flags the wrong loan.

Worker processes import `EnvOverdueLoans`; `LBTEST_CONTEXT` names the source
context, `LBTEST_NAME` the reactor, `LBTEST_PERIOD` the loan period (seconds).
"""

from __future__ import annotations

import os
from datetime import timedelta

from eventsource import Aggregate, Deadline, Event, Reaction, Reactor, deadline, handles, on


class LbLent(Event):
    event_type = "lb.lent"
    loan: str
    member: str


class LbReturned(Event):
    event_type = "lb.returned"
    loan: str


class LbBook(Aggregate, type_name="book"):
    loan: str | None = None

    def lend(self, loan: str, member: str) -> None:
        if self.loan is not None:
            raise ValueError(f"book {self.id} is out on loan {self.loan}")
        self.trigger(LbLent(loan=loan, member=member))

    def give_back(self) -> None:
        if self.loan is None:
            raise ValueError(f"book {self.id} is not out")
        self.trigger(LbReturned(loan=self.loan))

    @on(LbLent)
    def _lent(self, event: LbLent) -> None:
        self.loan = event.loan

    @on(LbReturned)
    def _returned(self, event: LbReturned) -> None:
        self.loan = None


class LbLoanFlagged(Event):
    event_type = "lb.loan_flagged"
    book: str


class LbLoan(Aggregate, type_name="loan"):
    """The reactor's own record of a loan: flagged at most once, or it shows."""

    def flag(self, book: str) -> None:
        self.trigger(LbLoanFlagged(book=book))

    @on(LbLoanFlagged)
    def _flagged(self, event: LbLoanFlagged) -> None:
        pass


class OverdueLoansBase(Reactor):
    period = timedelta(0)

    @handles(LbLent)
    def _lent(self, event: LbLent, reaction: Reaction) -> None:
        reaction.schedule(
            "overdue", event.aggregate_id, event.occurred_at + self.period, {"loan": event.loan}
        )

    @handles(LbReturned)
    def _returned(self, event: LbReturned, reaction: Reaction) -> None:
        reaction.cancel("overdue", event.aggregate_id)

    @deadline("overdue")
    def _overdue(self, due: Deadline, reaction: Reaction) -> None:
        loans = reaction.repository(LbLoan)
        loan = loans.find(due.payload["loan"]) or LbLoan(due.payload["loan"])
        loan.flag(due.key)
        loans.save(loan)


def overdue_loans(context: str, name: str, **attributes: object) -> type[OverdueLoansBase]:
    namespace = {"name": name, "topics": [f"{context}.book"], **attributes}
    return type("OverdueLoans", (OverdueLoansBase,), namespace)


class EnvOverdueLoans(OverdueLoansBase):
    name = os.environ.get("LBTEST_NAME", "lb_overdue")
    topics = [f"{os.environ.get('LBTEST_CONTEXT', 'lbtest')}.book"]
    period = timedelta(seconds=float(os.environ.get("LBTEST_PERIOD", "0")))
