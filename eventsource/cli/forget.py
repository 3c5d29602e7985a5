"""`eventsource forget SUBJECT`: erase a subject's personal data from a context."""

from __future__ import annotations

import click

from eventsource.cli.common import announce, describe_url, existing_engine, settings_from


@click.command("forget")
@click.argument("subject")
@click.option("--url", help="The store's database URL (default: EVENTSOURCE_DATABASE_URL).")
@click.option("--context", help="The store's bounded context (default: EVENTSOURCE_CONTEXT).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def forget(subject: str, url: str | None, context: str | None, as_json: bool) -> None:
    """Delete SUBJECT's key: its personal data reads as forgotten everywhere.

    Fields marked PersonalData that were sealed with the key decode to their
    placeholder from now on, in this store, on Kafka and in every consumer
    (within their key cache time). A PersonalDataForgotten notice is recorded
    for projections that copied the data. Forgetting a subject twice, or one
    without a key in this context, changes nothing.
    """
    from eventsource.console import print_json
    from eventsource.store.eventstore import EventStore

    settings = settings_from(url, context)
    announce(settings)
    engine = existing_engine(settings, needs="personal_data_keys")
    try:
        with EventStore(engine, context=settings.context) as store:
            forgotten = store.forget(subject)
    finally:
        engine.dispose()
    if as_json:
        print_json(
            {"subject": subject, "keys_deleted": forgotten.keys, "position": forgotten.position}
        )
    elif forgotten.keys:
        click.echo(
            f"forgot {subject!r} in context {settings.context!r}"
            f" ({describe_url(settings.database_url)}): its key is deleted, the notice is"
            f" at position {forgotten.position}"
        )
    else:
        click.echo(f"{subject!r} has no key in context {settings.context!r}; nothing to forget")
