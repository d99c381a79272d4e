"""Reading batch files, without a database.

NDJSON: one JSON object per line. CSV: a header, then one receipt per row, either with a `lines`
column holding a JSON list or with `sku`, `amount`, `quantity`, `category` for a one-line receipt.
A row names its store (`store_id`), receipt number, `occurred_at` (ISO 8601 with a zone) and member
(`member_id`, or `identifier_type` + `identifier_value`).

A batch is processed in chunks, each one transaction; `plan_chunks` cuts them so that all rows of
one member fall in one chunk, so that chunks processed side by side never wait for each other's
member locks, and a member's rows are posted in file order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from json.encoder import encode_basestring_ascii
from typing import Any

from kizuna.batches.errors import ErrorCode
from kizuna.core.errors import KizunaError
from kizuna.rules.domain import PurchaseLine

MAX_ROWS = 200_000
CHUNK_ROWS = 2000


class BatchFormat(StrEnum):
    NDJSON = "ndjson"
    CSV = "csv"


@dataclass(frozen=True)
class BatchRow:
    """One receipt of a batch, validated."""

    store_id: int
    receipt_no: str
    occurred_at: datetime
    lines: list[PurchaseLine]
    member_id: int | None
    identifier: tuple[str, str] | None

    def canonical(self) -> dict[str, Any]:
        """The row as plain data, the request an idempotency key is bound to."""
        return {
            "store_id": self.store_id,
            "receipt_no": self.receipt_no,
            "occurred_at": self.occurred_at.isoformat(),
            "lines": [line.to_dict() for line in self.lines],
            "member_id": self.member_id,
            "identifier": list(self.identifier) if self.identifier else None,
        }

    def digest(self) -> str:
        """The hash `db.idempotency.request_hash` gives `canonical()` — SHA-256 of its JSON with
        sorted keys and no spaces — with that JSON written directly: building and sorting the
        dict cost more than the rest of a row's parsing."""
        q = encode_basestring_ascii
        lines = ",".join(
            f'{{"amount":{line.amount},'
            f'"brand":{"null" if line.brand is None else q(line.brand)},'
            f'"category":{"null" if line.category is None else q(line.category)},'
            f'"quantity":{line.quantity},"sku":{q(line.sku)}}}'
            for line in self.lines
        )
        identifier = (
            "null"
            if self.identifier is None
            else f"[{q(self.identifier[0])},{q(self.identifier[1])}]"
        )
        member = "null" if self.member_id is None else self.member_id
        text = (
            f'{{"identifier":{identifier},"lines":[{lines}],"member_id":{member},'
            f'"occurred_at":{q(self.occurred_at.isoformat())},'
            f'"receipt_no":{q(self.receipt_no)},"store_id":{self.store_id}}}'
        )
        return hashlib.sha256(text.encode()).hexdigest()


def split_rows(content: bytes, fmt: BatchFormat) -> list[str]:
    """The file's rows as JSON texts (CSV rows become objects keyed by the header)."""
    # PostgreSQL stores no NUL character: a row holding one is malformed, not unstorable.
    text = content.decode("utf-8-sig", errors="replace").replace("\x00", "\ufffd")
    if fmt is BatchFormat.NDJSON:
        rows = [line for line in text.splitlines() if line.strip()]
    else:
        reader = csv.DictReader(io.StringIO(text))
        rows = [json.dumps(row, ensure_ascii=False) for row in reader]
    if not rows:
        raise KizunaError(ErrorCode.EMPTY_BATCH, "the file has no rows", status=422)
    if len(rows) > MAX_ROWS:
        raise KizunaError(
            ErrorCode.BATCH_TOO_LARGE, f"at most {MAX_ROWS} rows per batch", status=413
        )
    return rows


def _bad(message: str) -> KizunaError:
    return KizunaError(ErrorCode.MALFORMED_ROW, message, status=422)


def _int(data: dict[str, Any], name: str, *, minimum: int = 0) -> int:
    value = data.get(name)
    if type(value) is int and minimum <= value <= 2**53:  # the usual case, checked first
        return value
    if isinstance(value, bool) or value in (None, ""):
        raise _bad(f"{name}: required")
    try:
        number = int(value)
    except (TypeError, ValueError) as wrong:
        raise _bad(f"{name}: not an integer") from wrong
    if number < minimum or number > 2**53:
        raise _bad(f"{name}: out of range")
    return number


def _text(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if type(value) is str and 0 < len(text := value.strip()) <= limit:  # the usual case
        return text
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value).strip() == "":
        raise _bad(f"{name}: required")
    text = str(value).strip()
    if len(text) > limit:
        raise _bad(f"{name}: longer than {limit}")
    return text


def _lines(data: dict[str, Any]) -> list[PurchaseLine]:
    raw = data.get("lines")
    if isinstance(raw, str) and raw.strip():
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as wrong:
            raise _bad("lines: not JSON") from wrong
    if raw in (None, ""):
        raw = [{k: data.get(k) for k in ("sku", "amount", "quantity", "category")}]
    if not isinstance(raw, list) or not raw or len(raw) > 500:
        raise _bad("lines: a list of 1 to 500 lines is required")
    lines = []
    for number, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _bad(f"lines.{number}: not an object")
        category = item.get("category")
        lines.append(
            PurchaseLine(
                sku=_text(item, "sku", 64),
                amount=_int(item, "amount"),
                quantity=_int(item, "quantity", minimum=1) if item.get("quantity") else 1,
                category=str(category) if category not in (None, "") else None,
            )
        )
    return lines


def _storable(value: Any) -> bool:
    """False when a text inside is not valid Unicode (a lone surrogate, which JSON escapes can
    make and no database stores)."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    return True


def parse_row(raw: str) -> BatchRow:
    """A row of a batch, or `malformed_row` naming the field at fault."""
    if "\\u0000" in raw or "\ufffd" in raw:
        raise _bad("a row cannot hold a NUL character or bytes that are not UTF-8")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as wrong:
        raise _bad(f"not JSON: {wrong.msg}") from wrong
    if not isinstance(data, dict):
        raise _bad("a row must be an object")
    if "\\u" in raw and not _storable(data):
        raise _bad("a row cannot hold half of a UTF-16 surrogate pair")
    try:
        occurred_at = datetime.fromisoformat(_text(data, "occurred_at", 40))
    except ValueError as wrong:
        raise _bad("occurred_at: not an ISO 8601 date-time") from wrong
    if occurred_at.tzinfo is None:
        raise _bad("occurred_at: needs a time zone")
    member_id = _int(data, "member_id", minimum=1) if data.get("member_id") else None
    identifier = None
    if member_id is None:
        identifier = (_text(data, "identifier_type", 16), _text(data, "identifier_value", 200))
    return BatchRow(
        store_id=_int(data, "store_id", minimum=1),
        receipt_no=_text(data, "receipt_no", 100),
        occurred_at=occurred_at,
        lines=_lines(data),
        member_id=member_id,
        identifier=identifier,
    )


def member_key(raw: str) -> str | None:
    """What a row names its member by (`m:<id>` or `i:<type>:<value>`); None when unreadable."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    member_id = data.get("member_id")
    if member_id not in (None, ""):
        return f"m:{str(member_id).strip()}"
    kind, value = data.get("identifier_type"), data.get("identifier_value")
    if kind in (None, "") or value in (None, ""):
        return None
    return f"i:{str(kind).strip()}:{str(value).strip()}"


def plan_chunks(keys: list[str | None], size: int = CHUNK_ROWS) -> list[int]:
    """The chunk number of each row: a member's rows never span two chunks (a member with more
    than `size` rows gets a chunk of their own); members in order of first appearance, rows
    without a member (unreadable) on their own. A chunk holds at most `size` rows except that."""
    groups: dict[str | int, list[int]] = {}
    for number, key in enumerate(keys):
        groups.setdefault(key if key is not None else number, []).append(number)
    chunk_of = [0] * len(keys)
    chunk, filled = 0, 0
    for rows in groups.values():
        if filled and filled + len(rows) > size:
            chunk, filled = chunk + 1, 0
        for number in rows:
            chunk_of[number] = chunk
        filled += len(rows)
    return chunk_of
