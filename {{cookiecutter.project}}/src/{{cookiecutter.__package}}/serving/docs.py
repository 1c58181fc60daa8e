"""The service's documentation: an OpenAPI document true to every answer the service gives, and a
Swagger page that loads nothing from other sites."""

import base64
import functools
import hashlib
import html
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

# The refusals: {"error": ...}, with each validation error under "detail" for a 400, as the guards
# write them (guards.refuse, guards.invalid) in BentoML's shape (_bentoml_impl/server/app.py).
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what is wrong, and how to fix it"}},
}
INVALID = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string"},
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "loc", "msg"],
                "properties": {
                    "type": {"type": "string", "description": "the rule broken, e.g. missing"},
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                        "description": "where: records, the record's index, the field",
                    },
                    "msg": {"type": "string"},
                },
            },
        },
    },
}


def refusals(max_body_bytes: int, read_timeout: float) -> dict[str, Any]:
    """Every answer of an API route besides 200, with its body."""

    def answer(description: str, schema: str) -> dict[str, Any]:
        ref = {"$ref": f"#/components/schemas/{schema}"}
        return {"description": description, "content": {"application/json": {"schema": ref}}}

    return {
        "400": answer(
            "The body breaks the contract (invalid JSON, a duplicate key, a missing, unknown or "
            "mistyped field, a number outside its range, too many records), or the model gives "
            "no finite answer for a record: each problem under `detail`",
            "InvalidRequest",
        ),
        "408": answer(f"The headers or the body did not arrive within {read_timeout:g} s", "Error"),
        "413": answer(f"The body is over {max_body_bytes} bytes", "Error"),
        "415": answer("The body is not sent as application/json", "Error"),
        "431": answer("The request headers are too large", "Error"),
        "500": answer("A fault of the service; its log says more", "Error"),
        "504": answer("The service did not answer in time", "Error"),
    }


def openapi(
    bentoml_spec: dict[str, Any], summary: str, version: str, errors: dict[str, Any]
) -> dict[str, Any]:
    """BentoML's document, corrected: the service's own summary instead of the README, a required
    body, the refusals the service really sends, and only the schemas it uses."""
    spec = dict(bentoml_spec)
    spec["info"] = {"title": spec["info"]["title"], "version": version, "description": summary}
    for item in spec["paths"].values():
        post = item.get("post")
        if post and "requestBody" in post:
            post["requestBody"]["required"] = True
            ok = {str(status): answer for status, answer in post["responses"].items()}["200"]
            post["responses"] = {"200": ok, **errors}
    schemas = spec["components"]["schemas"]
    for unused in ("InvalidArgument", "NotFound", "InternalServerError", "TaskStatusResponse"):
        schemas.pop(unused, None)
    schemas.update({"Error": ERROR, "InvalidRequest": INVALID})
    return spec


# Swagger UI from BentoML's own copy (served at ./static_content), without the tag manager of
# BentoML's page (_bentoml_impl/server/main-openapi.html) and without Swagger's online validator.
SCRIPT = 'SwaggerUIBundle({url: "./docs.json", dom_id: "#swagger-ui", validatorUrl: null});'
PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>TITLE</title>
<link rel="stylesheet" href="./static_content/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="./static_content/swagger-ui-bundle.js"></script>
<script>{SCRIPT}</script></body>
</html>
"""
DIGEST = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
# The browser itself refuses anything from another origin, and every inline script but ours.
POLICY = (
    f"default-src 'self'; script-src 'self' 'sha256-{DIGEST}'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)


def app(title: str, spec: Callable[[], dict[str, Any]]) -> Starlette:
    """`/` and `/docs.json`, to mount on the service at `/`: BentoML mounts apps before it adds its
    own index and document routes (_bentoml_impl/server/app.py, ServiceAppFactory.__call__), and
    Starlette answers with the first route that matches."""
    document = functools.cache(spec)
    text = PAGE.replace("TITLE", html.escape(title))

    async def page(_: Request) -> HTMLResponse:
        return HTMLResponse(text, headers={"content-security-policy": POLICY})

    async def docs(_: Request) -> JSONResponse:
        return JSONResponse(document())

    return Starlette(routes=[Route("/", page), Route("/docs.json", docs)])
