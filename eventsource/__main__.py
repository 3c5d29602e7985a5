"""`python -m eventsource` runs the command line."""

from eventsource.cli import main

main()
