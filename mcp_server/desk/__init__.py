"""The approval desk: a small web application where approvers, signed in with a passkey, sign
exactly the approval they decide (PSD2-style dynamic linking). It records decisions; the gate
consumes them (see `decisions.decision_for`). Routes in `web`, storage in the other modules."""
