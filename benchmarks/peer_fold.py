"""eventsource's side of the peer benchmark's Kafka fold, one run per process.

    python -m benchmarks.peer_fold --context C --url URL --events N ...

A `Worker` runs the projection of `benchmarks/accounts.py` (a count and a sum
per account: `view.get` + `view.upsert` for every event) from a
`KafkaLogConsumer` in a fresh consumer group into the SQL view at `--url`,
until it has caught up with the topic. Each batch's rows and the consumer
positions commit in one SQL transaction (exactly-once). With `--tuned` it
runs as `eventsource projection run` does with
`EVENTSOURCE_TUNE_INTERPRETER=true`: the garbage collector held off and run
every 16th batch, a 1 ms GIL switch interval (`eventsource/tuning.py`).
Prints one JSON object: the timings and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from contextlib import nullcontext

from benchmarks.accounts import Deposited, totals
from benchmarks.peer_data import peak_rss_mib
from eventsource import Projection, View, Worker, handles
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.store.engine import create_engine
from eventsource.tuning import InterpreterTuning

_first: list[float] = []


def timed_projection(context: str) -> type[Projection]:
    """The accounts' projection, noting when it handles its first event."""

    class PeerTotals(Projection):
        name = "bench_totals"
        topics = [f"{context}.account"]
        rows = totals

        @handles(Deposited)
        def _deposited(self, event: Deposited, view: View) -> None:
            if not _first:
                _first.append(time.perf_counter())
            row = view.get(self.rows, event.aggregate_id)
            if row is None:
                view.upsert(self.rows, account=event.aggregate_id, events=1, total=event.amount)
            else:
                view.upsert(
                    self.rows,
                    account=event.aggregate_id,
                    events=row["events"] + 1,
                    total=row["total"] + event.amount,
                )

    return PeerTotals


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--context", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--batch", type=int, help="events per batch (default: the library's)")
    parser.add_argument("--tuned", action="store_true", help="the CLI's interpreter tuning")
    args = parser.parse_args()
    started = time.perf_counter()
    engine = create_engine(args.url)
    kafka = KafkaConfig(args.bootstrap_servers)
    consumer = KafkaLogConsumer(kafka, group_id=f"peer-fold-{uuid.uuid4().hex[:12]}")
    worker = Worker(
        timed_projection(args.context)(), consumer, engine=engine, batch_size=args.batch
    )
    with InterpreterTuning() if args.tuned else nullcontext() as tuning:
        on_batch = None if tuning is None else lambda _w, _s: tuning.batch_done()
        worker.run(until_caught_up=True, on_batch=on_batch)
    worker.close()
    finished = time.perf_counter()
    engine.dispose()
    print(
        json.dumps(
            {
                "total_s": finished - started,
                "after_startup_s": finished - _first[0],
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    )


if __name__ == "__main__":
    main()
