"""Wikimedia Commons: the client and its etiquette (http), API responses to records and rights evidence
(records), the category walk (walk), its bounds (bounds) and its resume state (state), the label tool, the offline mirror."""
