"""The online service: the predictor, the online drift monitor and the HTTP guards."""
