"""blinaetl."""
