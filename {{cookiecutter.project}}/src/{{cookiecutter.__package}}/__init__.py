"""The pipeline stages, the service and the monitoring code."""
