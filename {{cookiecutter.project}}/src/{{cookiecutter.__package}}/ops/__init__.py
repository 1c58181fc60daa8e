"""The tools the workflows call through make: report, register, deploy, drift, doctor, ..."""
