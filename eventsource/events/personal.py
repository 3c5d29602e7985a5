"""Personal data in events: the `PersonalData` mark, and how a marked field is sealed.

A field declared ``email: Annotated[str, PersonalData(subject="customer_id")]``
is stored encrypted with a key of its subject (AES-256-GCM). Deleting that
key (`EventStore.forget`) makes every stored and published copy of the
field unreadable at once, while the log itself stays immutable
(crypto-shredding). `docs/privacy.md` is the user's guide.

A sealed value is a JSON string::

    pd1:<context>:<key id>:<base64url of nonce + ciphertext + tag>

`context` names the bounded context whose key table holds the key (so that a
consumer in another context knows where to ask), `key id` names the key
(32 hex digits). The header up to the last colon is the cipher's associated
data, so neither part can be swapped. The plaintext is the JSON of the
field's value.
"""

from __future__ import annotations

import base64
import os
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventsource.errors import ConfigurationError

if TYPE_CHECKING:
    from eventsource.events.base import Event

FORGOTTEN = "[forgotten]"
"""What a personal `str` field reads as once its subject is forgotten (an
optional field reads as None)."""

AGGREGATE_ID = "aggregate_id"
PREFIX = "pd1:"
KEY_BYTES = 32  # AES-256
MAX_SUBJECT_LENGTH = 200  # as an aggregate id (a subject names a stream too)
_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class PersonalData:
    """Marks an event field as personal data of a subject.

    ::

        class CustomerRegistered(Event):
            name: Annotated[str, PersonalData()]  # subject: the aggregate's id
            address: Annotated[Address | None, PersonalData()]


        class OrderPlaced(Event):
            customer_id: str
            delivery_note: Annotated[str, PersonalData(subject="customer_id")]

    `subject` names the `str` field of the same event that holds the
    subject's id (the person the data is about), or `"aggregate_id"` (the
    default) for the id of the aggregate that records the event. The field
    must be a `str` without constraints (it reads as `FORGOTTEN` once the
    subject is forgotten) or optional, `T | None` (it reads as None).
    """

    subject: str = AGGREGATE_ID


@dataclass(frozen=True, slots=True)
class PersonalField:
    """One personal field of an event class, as the codec handles it."""

    name: str
    subject: str  # a field name, or AGGREGATE_ID
    placeholder: str | None  # the value once forgotten


@dataclass(frozen=True, slots=True)
class Sealing:
    """What the codec does beyond plain JSON for one event class.

    `fields` are sealed on encode and opened on decode; `notice` marks the
    class of `PersonalDataForgotten`, whose decoding drops the subject's
    cached keys.
    """

    fields: tuple[PersonalField, ...] = ()
    notice: bool = False


class SubjectKey:
    """A subject's key, ready to seal with."""

    __slots__ = ("cipher", "context", "header", "key_id")

    def __init__(self, context: str, key_id: str, key: bytes) -> None:
        self.context = context
        self.key_id = key_id
        self.header = f"{PREFIX}{context}:{key_id}:"
        self.cipher = AESGCM(key)


class KeyRing(Protocol):
    """Where the codec gets keys: its own context's to seal with, and any
    context's to open with."""

    def sealing_key(self, subject: str) -> SubjectKey:
        """The subject's current key in this context (made if it has none)."""
        ...

    def opening_key(self, context: str, key_id: str) -> AESGCM | None:
        """The cipher of a key, or None when the key is deleted (forgotten)."""
        ...

    def forgotten(self, subject: str) -> None:
        """A subject was forgotten somewhere: drop whatever is cached of it."""
        ...


class SealError(ValueError):
    """A sealed value is malformed or does not open with its own key."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def new_key_id() -> str:
    return os.urandom(16).hex()


def seal(key: SubjectKey, plaintext: bytes) -> str:
    """`plaintext` encrypted with `key`, as the sealed JSON string's text."""
    nonce = os.urandom(_NONCE_BYTES)
    header = key.header
    body = key.cipher.encrypt(nonce, plaintext, header.encode())
    return header + base64.urlsafe_b64encode(nonce + body).rstrip(b"=").decode()


def parse(value: str) -> tuple[str, str, str, bytes]:
    """`(header, context, key id, nonce + ciphertext)` of a sealed value."""
    try:
        _, context, key_id, text = value.split(":", 3)
        body = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise SealError(f"malformed sealed value: {exc}") from None
    if len(key_id) != 32 or len(body) <= _NONCE_BYTES:
        raise SealError("malformed sealed value")
    return value[: len(value) - len(text)], context, key_id, body


def open_sealed(cipher: AESGCM, header: str, body: bytes) -> bytes:
    """The plaintext of a parsed sealed value; `SealError` if it does not open."""
    try:
        return cipher.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], header.encode())
    except InvalidTag:
        raise SealError("the sealed value does not open with its key (corrupted)") from None


# -- declarations ----------------------------------------------------------------------


def sealing_of(cls: type[Event]) -> Sealing | None:
    """The personal fields of an event class, checked; None when it has none."""
    found: list[PersonalField] = []
    for name, info in cls.model_fields.items():
        marks = [m for m in info.metadata if isinstance(m, PersonalData)]
        if not marks:
            continue
        where = f"{cls.__qualname__}.{name}"
        if len(marks) > 1:
            raise ConfigurationError(f"{where} is marked PersonalData twice")
        placeholder = _placeholder(where, info.annotation, len(info.metadata) > 1)
        if info.alias or info.serialization_alias or info.validation_alias:
            raise ConfigurationError(f"{where}: a personal data field cannot have an alias")
        _check_subject(cls, where, marks[0].subject)
        found.append(PersonalField(name, marks[0].subject, placeholder))
    return Sealing(tuple(found)) if found else None


def _placeholder(where: str, annotation: Any, constrained: bool) -> str | None:
    if annotation is str:
        if constrained:
            raise ConfigurationError(
                f"{where}: a personal `str` field takes no constraints, since it reads as"
                f" {FORGOTTEN!r} once its subject is forgotten"
            )
        return FORGOTTEN
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation):
        return None
    raise ConfigurationError(
        f"{where}: personal data must be a `str` (forgotten: {FORGOTTEN!r}) or optional,"
        f" `T | None` (forgotten: None); got {annotation!r}"
    )


def _check_subject(cls: type[Event], where: str, subject: str) -> None:
    if subject == AGGREGATE_ID:
        return
    info = cls.model_fields.get(subject)
    if info is None or info.annotation is not str:
        raise ConfigurationError(
            f"{where}: its subject {subject!r} must be a `str` field of {cls.__qualname__}"
            f" (or {AGGREGATE_ID!r}, the aggregate's id)"
        )
    if any(isinstance(m, PersonalData) for m in info.metadata):
        raise ConfigurationError(f"{where}: its subject {subject!r} is personal data itself")


def check_subject(value: object) -> str | None:
    """Why `value` cannot be a subject's id, or None if it can.

    A subject names its key's row and the stream of its `PersonalDataForgotten`
    notice, so it obeys the rules of an aggregate id.
    """
    if not isinstance(value, str):
        return f"must be a str, got {type(value).__name__}"
    if not value.strip():
        return "is empty"
    if len(value) > MAX_SUBJECT_LENGTH:
        return f"is longer than {MAX_SUBJECT_LENGTH} characters"
    if "\x00" in value or not _encodable(value):
        return "is not valid UTF-8 text without NUL characters"
    return None


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
