"""Delivery channels: email (SMTP, aiosmtplib) and Microsoft Teams (Workflows webhook).

Each channel sends one rendered message to one address and classifies the result as a
`SendResult` (delivered / temporary / permanent / technical) with a fixed reason code.
SMS through GOV.UK Notify is not built yet (see docs/notifier.md).
"""
