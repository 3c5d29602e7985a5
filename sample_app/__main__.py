"""`python -m sample_app demo`."""

import sys

from eventsource import __version__


def main() -> None:
    if sys.argv[1:] != ["demo"]:
        sys.exit("usage: python -m sample_app demo")
    print(f"eventsource {__version__}: the sample app's demo is not built yet.")


main()
