"""Standard Webhooks signatures: the published test vector, and what ``verify_webhook`` refuses."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from saferails.clock import ManualClock
from saferails.errors import ConfigurationError, WebhookSignatureInvalid
from saferails.notify.signing import WebhookSigner, new_secret, verify_webhook

# The test vector published with the Standard Webhooks specification and its reference libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def vector_headers(signature: str = VECTOR_SIGNATURE) -> dict[str, str]:
    return {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP), "webhook-signature": signature}


def at(seconds: float) -> ManualClock:
    return ManualClock(datetime.fromtimestamp(VECTOR_TIMESTAMP + seconds, UTC))


def test_our_signature_reproduces_the_published_test_vector() -> None:
    assert WebhookSigner(VECTOR_SECRET).signature(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_the_published_test_vector_verifies_within_five_minutes_of_its_timestamp() -> None:
    assert verify_webhook(VECTOR_SECRET, VECTOR_BODY, vector_headers(), clock=at(299)) == VECTOR_ID
    assert verify_webhook(VECTOR_SECRET, VECTOR_BODY, vector_headers(), clock=at(-299)) == VECTOR_ID


def test_one_matching_signature_among_several_is_enough_as_during_a_key_rotation() -> None:
    rotated = vector_headers(f"v1,bm9wZQ== {VECTOR_SIGNATURE}")
    assert verify_webhook(VECTOR_SECRET, VECTOR_BODY, rotated, clock=at(0)) == VECTOR_ID


@pytest.mark.parametrize(
    ("body", "headers", "secret", "clock_offset", "reason"),
    [
        (b'{"test": 2432232315}', vector_headers(), VECTOR_SECRET, 0, "signature_mismatch"),
        (VECTOR_BODY, vector_headers(), new_secret(), 0, "signature_mismatch"),
        (VECTOR_BODY, vector_headers(), VECTOR_SECRET, 301, "timestamp_too_old"),
        (VECTOR_BODY, vector_headers(), VECTOR_SECRET, -301, "timestamp_too_new"),
        (VECTOR_BODY, {**vector_headers(), "webhook-timestamp": "yesterday"}, VECTOR_SECRET, 0, "bad_timestamp"),
        (VECTOR_BODY, {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP)}, VECTOR_SECRET, 0,
         "missing_headers"),
        (VECTOR_BODY, vector_headers("v1,garbage-not-base64"), VECTOR_SECRET, 0, "signature_mismatch"),
        (VECTOR_BODY, vector_headers("sha256=" + "0" * 64), VECTOR_SECRET, 0, "signature_mismatch"),
        (b"\xff\xfe", vector_headers(), VECTOR_SECRET, 0, "bad_body"),
    ],
    ids=["tampered body", "wrong secret", "six minutes old (a replay)", "from the future", "timestamp not a number",
         "no signature header", "garbage signature", "the old sha256= scheme", "body not UTF-8"],
)
def test_verification_refuses(body: bytes, headers: dict[str, str], secret: str, clock_offset: int,
                              reason: str) -> None:
    with pytest.raises(WebhookSignatureInvalid) as excinfo:
        verify_webhook(secret, body, headers, clock=at(clock_offset))
    assert excinfo.value.details["reason"] == reason
    assert excinfo.value.http_status == 401 and excinfo.value.code == "WEBHOOK_SIGNATURE_INVALID"


def test_header_names_are_matched_case_insensitively() -> None:
    headers = {k.title(): v for k, v in vector_headers().items()}
    assert verify_webhook(VECTOR_SECRET, VECTOR_BODY, headers, clock=at(0)) == VECTOR_ID


def test_signed_headers_verify_with_the_same_secret_as_raw_key_bytes_or_whsec_string() -> None:
    secret = new_secret()
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    headers = WebhookSigner(secret).headers("msg_1", b'{"a":1}', now)
    clock = ManualClock(now + timedelta(minutes=4))
    assert verify_webhook(secret, b'{"a":1}', headers, clock=clock) == "msg_1"
    raw = base64.b64decode(secret.removeprefix("whsec_"))
    assert verify_webhook(raw, b'{"a":1}', headers, clock=clock) == "msg_1"


@pytest.mark.parametrize("secret", ["plain-text-password-of-enough-length", "whsec_!!!", "whsec_c2hvcnQ=", b"short"],
                         ids=["no whsec_ prefix", "not base64", "key too short", "raw key too short"])
def test_malformed_secrets_are_refused_without_echoing_them(secret: str | bytes) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        WebhookSigner(secret)
    text = secret if isinstance(secret, str) else secret.decode()
    assert text.removeprefix("whsec_") not in excinfo.value.message
