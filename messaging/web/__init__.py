"""HTTP edges of messaging: the enqueue API, provider webhooks, the scheduled-messages pages."""
