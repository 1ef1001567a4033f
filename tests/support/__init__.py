"""Helpers every test suite shares: processes (`processes`)."""
