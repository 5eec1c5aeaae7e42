"""Pure metric functions over arrays and word lists; no models, no I/O."""
