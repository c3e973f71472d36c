"""The ledger: double-entry books (`books`), the values a request carries (`money`, `identifiers`,
`free_text`), the records it returns (`models`), who may act on which account (`entitlements`) and
the one error type for anything a caller can fix (`errors`)."""
