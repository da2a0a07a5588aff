"""Stage 1: read detection datasets into one record type, cut them into patches."""
