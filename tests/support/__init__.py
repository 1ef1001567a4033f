"""Helpers every test suite shares: processes (`processes`), JSON documents (`documents`)."""
