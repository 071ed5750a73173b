"""Analytics jobs: daily stats with usage alerts, weekly summaries."""
