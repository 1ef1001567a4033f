"""Jinja2 templates of the notifier: one `<template>.<audience kind>.j2` per message,
plus the shared layouts (`layout.txt.j2`, `layout.html.j2`). Cards are built in Python."""
