"""An application's own Alembic environment, beside eventsource's migrations.

An ordinary environment: its revisions are recorded in Alembic's usual
`alembic_version`, apart from eventsource's `eventsource_alembic_version`,
so neither history sees the other. eventsource's tables are upgraded first
(`eventsource db upgrade`, or `upgrade_schema(url)` in code), so that the
application's revisions can use them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
    "sqlalchemy.url"
)
if not url:
    raise SystemExit("give the database: alembic -x url=...")

engine = sa.create_engine(url)
try:
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
finally:
    engine.dispose()
