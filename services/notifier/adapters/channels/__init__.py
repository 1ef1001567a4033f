"""Delivery channels: email (SMTP, aiosmtplib), Microsoft Teams (Workflows webhook) and,
when configured, SMS through GOV.UK Notify (`sms.py`).

Each channel sends one rendered message to one address and classifies the result as a
`SendResult` (delivered / temporary / permanent / technical) with a fixed reason code.
`base.py` holds what they share: the `Channel` interface delivery calls, pacing (`Paced`,
one `RateLimiter` per channel) and the HTTP channels' aiohttp session.
"""
