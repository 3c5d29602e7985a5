"""Which packages the distribution holds; everything else is in pyproject.toml.

The Alembic environment lives in the top-level `migrations/` folder, and a
wheel installs it as the `eventsource.migrations` package (so that
`EventStore.create_schema()` and `eventsource db upgrade` can run it).
pyproject.toml can either discover packages or list them with a mapped
folder among them, not both; here discovery keeps new subpackages in the
wheel without a list to maintain, and the mapping is added to it.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["eventsource*", "sample_app*"]),
        "eventsource.migrations",
        "eventsource.migrations.versions",
    ],
    package_dir={"eventsource.migrations": "migrations"},
)
