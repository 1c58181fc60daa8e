"""The pipeline stages, the service and the monitoring code."""

# The experiment, the registered model, the BentoML model and the service carry the package's name.
NAME = __name__
