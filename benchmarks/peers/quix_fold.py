"""quix-streams' side of the peer benchmark's Kafka fold, run in .venv-peers.

    .venv-peers/bin/python benchmarks/peers/quix_fold.py --topic T --events N ...

Used the way its documentation shows: an `Application` with
`processing_guarantee="exactly-once"` and `auto_offset_reset="earliest"`, a
`StreamingDataFrame` over the topic (JSON values, string keys) and a stateful
`apply` that keeps a count and a sum per key in its RocksDB state (backed by
its changelog topic, which it creates). It stops after `--events` messages.
Prints one JSON object: the timings, the peak RSS and the folded state read
back from RocksDB once the application has stopped. Imports nothing of
eventsource (this environment does not have it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from quixstreams import Application, State


def peak_rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def read_state(state_dir: Path) -> dict[str, list[int]]:
    """Every key's `[count, sum]` from the stopped application's RocksDB partitions."""
    from rocksdict import AccessType, Options, Rdict

    folded: dict[str, list[int]] = {}
    for current in sorted(state_dir.rglob("CURRENT")):  # one RocksDB per partition
        partition = current.parent
        options = Options(raw_mode=True)
        db = Rdict(str(partition), options=options, access_type=AccessType.read_only())
        try:
            for key, value in db.items():
                # A state key is the message key and the state's name, both as JSON.
                prefix, _, name = bytes(key).rpartition(b"|")
                if name == b'"totals"':
                    folded[json.loads(prefix)] = json.loads(value)
        finally:
            db.close()
    return folded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args()

    first: list[float] = []

    def fold(value: dict[str, Any], state: State) -> dict[str, Any]:
        if not first:
            first.append(time.perf_counter())
        totals = state.get("totals")
        if totals is None:
            totals = [1, value["amount"]]
        else:
            totals = [totals[0] + 1, totals[1] + value["amount"]]
        state.set("totals", totals)
        return value

    started = time.perf_counter()
    app = Application(
        broker_address=args.bootstrap_servers,
        consumer_group=args.group,
        processing_guarantee="exactly-once",
        auto_offset_reset="earliest",
        state_dir=str(args.state_dir),
    )
    topic = app.topic(args.topic, value_deserializer="json", key_deserializer="str")
    sdf = app.dataframe(topic)
    sdf = sdf.apply(fold, stateful=True)
    app.run(count=args.events, collect=False)
    finished = time.perf_counter()
    print(
        json.dumps(
            {
                "total_s": finished - started,
                "after_startup_s": finished - first[0],
                "peak_rss_mib": peak_rss_mib(),
                "folded": read_state(args.state_dir),
            }
        )
    )


if __name__ == "__main__":
    main()
