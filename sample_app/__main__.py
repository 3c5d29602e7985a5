"""`python -m sample_app demo` (embedded SQLite) or `kafka-demo` (Kafka + PostgreSQL)."""

import sys

USAGE = "usage: python -m sample_app demo | kafka-demo [--postgres URL] [--kafka SERVERS]"

command = sys.argv[1] if len(sys.argv) > 1 else ""
if command == "demo" and len(sys.argv) == 2:
    from sample_app.demo import main

    main()
elif command == "kafka-demo":
    from sample_app.kafka_demo import main as kafka_main

    kafka_main(sys.argv[2:])
else:
    sys.exit(USAGE)
