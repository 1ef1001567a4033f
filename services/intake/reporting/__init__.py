"""The performance data report: figures (pure), exports (CSV/JSON) and the /report page."""
