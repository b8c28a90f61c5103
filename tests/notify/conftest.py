"""Notifier tests use the real local servers from tests/support: ``smtp_server`` (aiosmtpd) and
``webhook_receiver`` (an http.server answering 503 to the first ``fail_first`` POSTs, then 204)."""
