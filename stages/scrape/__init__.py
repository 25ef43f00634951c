"""Source side of the build: network in, store out (Wikimedia Commons, the offline mirror)."""
