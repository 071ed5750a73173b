"""The queue engine: claim due messages, send them, record outcomes, reconcile expired
leases, pace requests, apply delivery reports. Providers live in `providers/`."""
