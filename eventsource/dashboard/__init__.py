"""`eventsource dashboard`: a read-only web page of consumers, dead letters and events.

The parts, in the order data flows: `sources` opens every context's
database so that it cannot write; `gather` reads them through the
framework's read APIs; `sampler` does so every few seconds on one thread
and keeps a bounded `history` (lag over time, throughput); `app` serves the
page (`static/`) and the latest snapshot as JSON; `serve` binds and runs it.
Needs the `dashboard` extra (Starlette and uvicorn).
"""

from eventsource.dashboard.history import History as History
from eventsource.dashboard.sampler import Sampler as Sampler
from eventsource.dashboard.sources import Sources as Sources
from eventsource.dashboard.sources import Watched as Watched
from eventsource.dashboard.sources import WatchedTransform as WatchedTransform

__all__ = ["History", "Sampler", "Sources", "Watched", "WatchedTransform"]
