"""The signed audit chain: appending records (`writer`), reading and verifying them (`reader`), and
the signing keys (`keys`)."""
