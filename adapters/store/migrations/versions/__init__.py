"""One module per schema revision, oldest first. Never edit a revision that has been released."""
