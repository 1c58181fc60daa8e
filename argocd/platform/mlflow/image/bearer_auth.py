"""MLflow's basic-auth app that also takes the clients' `Authorization: Bearer <user>:<password>`.

MLflow clients send MLFLOW_TRACKING_TOKEN as a bearer token, and browsers the basic scheme; both
name a user of MLflow's own user store, with that user's permissions. Enabled by
`authorization_function = bearer_auth:authenticate` in the auth configuration (auth.ini).
"""

from flask import Response, g, request
from mlflow.server.auth import authenticate_request_basic_auth, make_basic_auth_response, store
from werkzeug.datastructures import Authorization


def authenticate() -> Authorization | Response:
    """The request's user, by a bearer `<user>:<password>` or by basic auth; else a 401."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return authenticate_request_basic_auth()
    # MLflow asks several times per request, and the password hash is slow on purpose.
    if "bearer_user" not in g:
        username, _, password = token.strip().partition(":")
        g.bearer_user = username if store.authenticate_user(username, password) else None
    if g.bearer_user is None:
        return make_basic_auth_response()
    return Authorization("basic", {"username": g.bearer_user})
