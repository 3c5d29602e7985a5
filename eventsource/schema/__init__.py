"""Schema evolution tools: lock the shapes of an app's events, check changes against them,
and decode a store's events through the current classes in a dry run.

`eventsource schema lock|check` is the command line over these; the rules they
enforce are in docs/schema-evolution.md.
"""

from eventsource.schema.check import Problem as Problem
from eventsource.schema.check import check as check
from eventsource.schema.check import relock as relock
from eventsource.schema.check import unrecorded as unrecorded
from eventsource.schema.dryrun import DryRun as DryRun
from eventsource.schema.dryrun import TypeReport as TypeReport
from eventsource.schema.dryrun import dry_run as dry_run
from eventsource.schema.lock import LOCK_FILE as LOCK_FILE
from eventsource.schema.lock import SchemaLock as SchemaLock
from eventsource.schema.lock import current_lock as current_lock
from eventsource.schema.lock import event_schema as event_schema
from eventsource.schema.lock import read_lock as read_lock
from eventsource.schema.lock import write_lock as write_lock

__all__ = [
    "LOCK_FILE",
    "DryRun",
    "Problem",
    "SchemaLock",
    "TypeReport",
    "check",
    "current_lock",
    "dry_run",
    "event_schema",
    "read_lock",
    "relock",
    "unrecorded",
    "write_lock",
]
