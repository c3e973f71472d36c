-- 0011: a record that moved money states the currency of its amount_minor.
--
-- A daily total (the policy's moved_today_minor) counts the call's own currency: 500 JPY and
-- 500.00 EUR are not 1,000 of anything. The column is signed and chained with the rest of the
-- record when set; the records from before it (currency NULL) were signed without it and verify
-- as they were. A total counts such a record in every currency, on the safe side of a limit.
ALTER TABLE audit_log ADD COLUMN currency TEXT
