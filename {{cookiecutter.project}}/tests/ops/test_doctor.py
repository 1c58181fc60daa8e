"""`make doctor`: each missing GitHub setting is named with what to do, read as GitHub serves it."""

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tumor_classifier.cli import UserError
from tumor_classifier.ops import doctor

S3 = {"AWS_REGION": "eu-west-1", "AWS_PR_ROLE_ARN": "arn:pr", "AWS_MAIN_ROLE_ARN": "arn:main"}
COMPLETE = {**S3, "BOT_CLIENT_ID": "Iv1.bot", "DEPLOY_CLIENT_ID": "Iv1.deploy"}
SECRETS = {"BOT_PRIVATE_KEY"}
CONFIG = """[core]
    remote = {kind}
['remote "{kind}"']
    url = {url}
['remote "pr"']
    url = {url}-pr
    verify = true
"""
URLS = {"local": "~/dvc", "s3": "s3://b/p", "gs": "gs://b/p", "azure": "azure://c/p"}
RULES = [
    {"type": "pull_request", "parameters": {}},
    {
        "type": "required_status_checks",
        "parameters": {
            "strict_required_status_checks_policy": True,
            "required_status_checks": [{"context": c} for c in doctor.REQUIRED_CHECKS],
        },
    },
]


def config(tmp_path: Path, kind: str = "s3", text: str | None = None) -> Path:
    path = tmp_path / "config"
    path.write_text(text or CONFIG.format(kind=kind, url=URLS[kind]))
    return path


def test_remote_kind_comes_from_the_dvc_config(tmp_path: Path) -> None:
    assert doctor.remote_kind(config(tmp_path, "s3")) == "s3"
    assert doctor.remote_kind(config(tmp_path, "local")) == "local"
    assert doctor.remote_kind(config(tmp_path, "azure")) == "azure"


def test_nothing_missing(tmp_path: Path) -> None:
    assert doctor.problems(config(tmp_path), COMPLETE, SECRETS) == []


@pytest.mark.parametrize(
    ("kind", "variables", "secrets", "missing"),
    [
        ("local", COMPLETE, SECRETS, "the DVC remote is a local directory"),
        ("s3", {**COMPLETE, "AWS_MAIN_ROLE_ARN": ""}, SECRETS, "AWS_MAIN_ROLE_ARN is not set"),
        ("gs", COMPLETE, SECRETS, "GCP_PR_SERVICE_ACCOUNT is not set"),
        ("azure", COMPLETE, SECRETS, "AZURE_MAIN_CLIENT_ID is not set"),
        ("azure", COMPLETE, SECRETS, "the azure remote has no storage account"),
        ("s3", {**COMPLETE, "BOT_CLIENT_ID": ""}, SECRETS, "BOT_CLIENT_ID is not set"),
        ("s3", {**COMPLETE, "DEPLOY_CLIENT_ID": ""}, SECRETS, "DEPLOY_CLIENT_ID is not set"),
        ("s3", COMPLETE, set(), "secret BOT_PRIVATE_KEY is not set"),
    ],
)
def test_each_missing_setting_is_named(
    tmp_path: Path, kind: str, variables: dict[str, str], secrets: set[str], missing: str
) -> None:
    assert any(missing in p for p in doctor.problems(config(tmp_path, kind), variables, secrets))


def test_the_quarantine_remote_must_exist_and_verify(tmp_path: Path) -> None:
    without = "[core]\n    remote = s3\n['remote \"s3\"']\n    url = s3://b/p\n"
    (found,) = doctor.problems(config(tmp_path, text=without), COMPLETE, SECRETS)
    assert found.startswith("no `pr` remote in .dvc/config")
    unverified = CONFIG.format(kind="s3", url="s3://b/p").replace("    verify = true\n", "")
    (found,) = doctor.problems(config(tmp_path, text=unverified), COMPLETE, SECRETS)
    assert "`uv run dvc remote modify pr verify true`" in found


def test_azure_needs_the_account_of_each_remote(tmp_path: Path) -> None:
    text = CONFIG.format(kind="azure", url="azure://c/p").replace(
        "url = azure://c/p\n", "url = azure://c/p\n    account_name = acct\n", 1
    )
    variables = {**COMPLETE, **dict.fromkeys(doctor.REMOTE_VARIABLES["azure"], "x")}
    assert doctor.problems(config(tmp_path, text=text), variables, SECRETS) == [
        "the pr remote has no storage account: `uv run dvc remote modify pr account_name <account>`"
    ]


def test_optional_settings_are_flagged_not_required() -> None:
    notes = doctor.notes({}, set())
    assert [note.split(" ")[0] for note in notes] == list(doctor.OPTIONAL)
    assert doctor.notes({name: "x" for name in doctor.OPTIONAL}, {"MLFLOW_TRACKING_TOKEN"}) == []
    assert "MLFLOW_TRACKING_TOKEN" in doctor.notes(dict.fromkeys(doctor.OPTIONAL, "x"), set())[0]


def test_rulesets() -> None:
    assert doctor.protection_problems(RULES, {}) == []
    loose = json.loads(json.dumps(RULES))
    loose[1]["parameters"]["strict_required_status_checks_policy"] = False
    (found,) = doctor.protection_problems(loose, {})
    assert "require branches to be up to date" in found
    assert doctor.protection_problems([*loose, {"type": "merge_queue"}], {}) == []
    loose[1]["parameters"]["required_status_checks"] = [{"context": "lint and test"}]
    assert any("`train, report, gate`" in p for p in doctor.protection_problems(loose, {}))
    (found,) = doctor.protection_problems(RULES[1:], {})
    assert found.startswith("main accepts pushes without a pull request")


def test_classic_branch_protection() -> None:
    def branch(contexts: list[str]) -> dict[str, Any]:
        return {"protected": True, "protection": {"required_status_checks": {"contexts": contexts}}}

    assert doctor.protection_problems([], branch(list(doctor.REQUIRED_CHECKS))) == []
    (found,) = doctor.protection_problems([], branch(["lint and test"]))
    assert "`train, report, gate`" in found
    (found,) = doctor.protection_problems([], {"protected": False})
    assert found.startswith("main requires no checks")


def test_the_deploy_environment_admits_main_only() -> None:
    assert "no environment `staging`" in doctor.environment_problems(None, None)[0]
    assert "admits branches other than main" in doctor.environment_problems({}, None)[0]
    custom = {"deployment_branch_policy": {"custom_branch_policies": True}}
    assert doctor.environment_problems(custom, ["main"]) == []
    assert doctor.environment_problems(custom, ["main", "release/*"]) != []
    protected = {"deployment_branch_policy": {"protected_branches": True}}
    assert doctor.environment_problems(protected, None) == []


def test_app_permissions() -> None:
    assert "is not installed" in doctor.app_problems("BOT", None)[0]
    granted = {"contents": "write", "pull_requests": "write", "workflows": "write"}
    assert doctor.app_problems("BOT", {"permissions": granted}) == []
    assert doctor.app_problems("BOT", {"permissions": {**granted, "contents": "admin"}}) == []
    (found,) = doctor.app_problems("BOT", {"permissions": {**granted, "workflows": "read"}})
    assert found.startswith("the BOT App lacks workflows: write (it has read)")


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verified_claims(token: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """The claims, after checking the RS256 signature with the public key (raises if forged)."""
    header, claims, signature = token.split(".")
    key.public_key().verify(
        unb64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    assert json.loads(unb64(header)) == {"alg": "RS256", "typ": "JWT"}
    return dict(json.loads(unb64(claims)))


def test_the_app_token_is_signed_by_its_key(key: rsa.RSAPrivateKey) -> None:
    token = doctor.app_jwt("Iv1.bot", pem(key), now=1_000_000)
    assert verified_claims(token, key) == {"iat": 999_940, "exp": 1_000_540, "iss": "Iv1.bot"}
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidSignature):
        verified_claims(token, other)


class GitHub(BaseHTTPRequestHandler):
    """GitHub's REST API as far as the doctor reads it, with the App's key to check its token."""

    routes: ClassVar[dict[str, Any]] = {}
    key: rsa.RSAPrivateKey
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        token = self.headers["Authorization"].removeprefix("Bearer ")
        self.seen.append(self.path)
        if self.path.endswith("/installation"):
            try:
                verified_claims(token, self.key)
            except Exception:
                self.send_response(401)
                self.end_headers()
                return
        elif token != "read-only":
            self.send_response(401)
            self.end_headers()
            return
        body = self.routes.get(self.path)
        self.send_response(404 if body is None else 200)
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def github(key: rsa.RSAPrivateKey) -> Iterator[str]:
    GitHub.key, GitHub.seen = key, []
    server = HTTPServer(("127.0.0.1", 0), GitHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


REPO = "/repos/acme/model"


def test_github_is_read_with_the_token_and_the_app_key(github: str, key: rsa.RSAPrivateKey) -> None:
    GitHub.routes = {
        f"{REPO}/rules/branches/main": RULES,
        f"{REPO}/branches/main": {"protected": False},
        f"{REPO}/environments/staging": {
            "deployment_branch_policy": {"custom_branch_policies": True}
        },
        f"{REPO}/environments/staging/deployment-branch-policies": {
            "branch_policies": [{"name": "main"}]
        },
        f"{REPO}/installation": {"permissions": dict(doctor.APPS["BOT"])},
    }
    assert doctor.github_problems(github, "acme/model", "read-only", pem(key), "Iv1.bot") == []
    assert f"{REPO}/installation" in GitHub.seen
    GitHub.routes[f"{REPO}/installation"] = {"permissions": {"contents": "write"}}
    del GitHub.routes[f"{REPO}/environments/staging"]
    found = doctor.github_problems(github, "acme/model", "read-only", pem(key), "Iv1.bot")
    assert [p.split(":")[0] for p in found] == [
        "no environment `staging`",
        "the BOT App lacks pull_requests",
        "the BOT App lacks workflows",
    ]


def test_main_lists_what_is_missing_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dvc").mkdir()
    config(tmp_path).rename(tmp_path / ".dvc/config")
    monkeypatch.setenv("VARS", json.dumps({"AWS_REGION": "eu-west-1"}))
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("HAS_BOT_PRIVATE_KEY", raising=False)
    with pytest.raises(UserError, match="5 setting"):
        doctor.main([])
    out = capsys.readouterr().out
    assert "missing: repository variable AWS_PR_ROLE_ARN is not set" in out
    assert "optional: MLFLOW_TRACKING_URI is not set: CI tracks into a throwaway mlflow.db" in out
    monkeypatch.setenv("VARS", json.dumps(COMPLETE))
    monkeypatch.setenv("HAS_BOT_PRIVATE_KEY", "true")
    doctor.main([])
    assert "every setting the workflows need is in place" in capsys.readouterr().out
