"""Resend /emails and /emails/batch endpoints of the fake server."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from . import wire

if TYPE_CHECKING:
    from .providers import FakeProviders, RecordedRequest

Result = tuple[int, Any, str]  # status, JSON body, outcome for the record
MAX_BATCH = 100
MAX_RECIPIENTS = 50


def handle_resend(fake: FakeProviders, req: RecordedRequest) -> Result:
    auth = req.headers.get("authorization", "")
    token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else ""
    if not token:
        return _error("missing_api_key")
    if token != fake.resend_api_key:
        return _error("invalid_api_key")
    batch = req.route == "email_batch"
    mode = req.headers.get("x-batch-validation", "strict").lower()
    if mode not in ("strict", "permissive"):
        return _error("validation_error", "`x-batch-validation` must be strict or permissive.")
    permissive = batch and mode == "permissive"
    problem = _validate_batch(req.json, check_items=not permissive) if batch else _validate_email(req.json)
    if problem:
        return _error(*problem)
    items = req.json if batch else [req.json]
    # Permissive: the valid emails are created, the others answered by their request index.
    refused = {i: p[1] for i, p in enumerate(map(_validate_email, items)) if p} if permissive else {}
    indexed = [(i, item) for i, item in enumerate(items) if i not in refused]
    items = [item for _, item in indexed]
    if fake.resend_domains is not None and any(_domain(i.get("from", "")) not in fake.resend_domains for i in items):
        return _error("invalid_from_address")
    key = req.headers.get("idempotency-key")
    fingerprint = json.dumps([req.route, req.json], sort_keys=True)
    with fake.lock:
        prior = fake.idempotency.get(key) if key else None
        if prior is not None:
            # Like Resend: same key + same payload returns the first answer
            # without sending again; a different payload is a client bug.
            if prior["fingerprint"] != fingerprint:
                return _error("invalid_idempotent_request")
            return 200, prior["body"], "replayed"
        ids = [str(uuid.uuid4()) for _ in items]
        for email_id, (index, item) in zip(ids, indexed, strict=True):
            fake.emails.append(_email_record(email_id, item, key, batch, index))
        body = {"data": [{"id": i} for i in ids]} if batch else {"id": ids[0]}
        if permissive:
            body["errors"] = [{"index": i, "message": m} for i, m in sorted(refused.items())]
        if key:
            fake.idempotency[key] = {"fingerprint": fingerprint, "body": body}
    return 200, body, "sent"


def _email_record(email_id: str, item: dict, key: str | None, batch: bool, index: int) -> dict:
    to = item["to"]
    return {
        "id": email_id,
        "from": item.get("from"),
        "to": [to] if isinstance(to, str) else list(to),
        "subject": item.get("subject"),
        "html": item.get("html"),
        "text": item.get("text"),
        "idempotency_key": key,
        "batch": batch,
        "batch_index": index if batch else None,
    }


def _validate_batch(body: Any, check_items: bool = True) -> tuple[str, str] | None:
    if not isinstance(body, list) or not body:
        return "validation_error", "Batch body must be a non-empty array."
    if len(body) > MAX_BATCH:
        return "validation_error", f"Batch accepts at most {MAX_BATCH} emails."
    for index, item in enumerate(body if check_items else []):
        problem = _validate_email(item)
        if problem:
            return problem[0], f"emails[{index}]: {problem[1]}"
    return None


def _validate_email(body: Any) -> tuple[str, str] | None:
    if not isinstance(body, dict):
        return "validation_error", "Body must be a JSON object."
    for name in ("from", "to", "subject"):
        if not body.get(name):
            return "missing_required_field", f"Missing `{name}` field."
    if not body.get("html") and not body.get("text"):
        return "missing_required_field", "Missing `html` or `text` field."
    to = body["to"]
    if not isinstance(to, str) and len(to) > MAX_RECIPIENTS:
        return "validation_error", f"`to` accepts at most {MAX_RECIPIENTS} recipients."
    if any("@" not in address for address in ([to] if isinstance(to, str) else to)):
        return (
            "validation_error",
            "Invalid `to` field. The email address needs to follow the `email@example.com` format.",
        )
    return None


def _error(name: str, message: str | None = None) -> Result:
    status, body = wire.resend_error(name, message)
    return status, body, f"error:{name}"


def _domain(sender: str) -> str:
    # "Name <user@domain>" or "user@domain"
    return sender.rsplit("@", 1)[-1].rstrip(">").lower()
