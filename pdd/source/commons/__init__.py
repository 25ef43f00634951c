"""Wikimedia Commons: polite resumable client, resume state, label tool, offline mirror."""
