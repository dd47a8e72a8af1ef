"""Credentials and TLS for outbound HTTP: the scrape's and every sink's that speaks plain HTTP (remote write).

Configured as users write them under `auth:` and `tls:`; the header is built at
each request so a rotated token or password file is read again, and every value
is registered as a secret, so none reaches a log.
"""

from __future__ import annotations

import ssl
from typing import Annotated, Literal

import httpx
from pydantic import Field, SecretStr, model_validator

from bridge import secrets
from bridge.http import tls_context
from bridge.schema import StrictModel, check_tls_files


class NoAuth(StrictModel):
    type: Literal["none"] = "none"


class BearerAuth(StrictModel):
    type: Literal["bearer"] = "bearer"
    token: SecretStr | None = Field(None, description="the token itself (use ${VAR} or ${file:/path})")
    token_file: str | None = Field(None, description="file holding the token, re-read at every scrape")


class BasicAuth(StrictModel):
    type: Literal["basic"] = "basic"
    username: str
    password: SecretStr | None = None
    password_file: str | None = None


Auth = Annotated[NoAuth | BearerAuth | BasicAuth, Field(discriminator="type")]


class TLSConfig(StrictModel):
    ca_file: str | None = Field(None, description="PEM bundle to verify the server with")
    cert_file: str | None = Field(None, description="client certificate (mTLS)")
    key_file: str | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _files_load(self) -> TLSConfig:
        """Read the files now, as the scrape will: `validate` refuses what `run` would (unused when not verifying)."""
        if not self.insecure_skip_verify:
            check_tls_files(self.ca_file, self.cert_file, self.key_file, keys=("ca_file", "cert_file", "key_file"))
        return self


def auth_header(auth: NoAuth | BearerAuth | BasicAuth) -> dict[str, str]:
    """The Authorization header, credential files re-read now (rotation); OSError or ValueError naming the file."""
    if isinstance(auth, BearerAuth):
        token = auth.token.get_secret_value() if auth.token else secrets.read_file(auth.token_file or "")
        return {"Authorization": f"Bearer {token}"}
    if isinstance(auth, BasicAuth):
        password = (
            auth.password.get_secret_value()
            if auth.password
            else (secrets.read_file(auth.password_file) if auth.password_file else "")
        )
        basic = httpx.BasicAuth(auth.username, password)
        header = next(basic.auth_flow(httpx.Request("GET", "http://x"))).headers["Authorization"]
        secrets.register(header.removeprefix("Basic "))
        return {"Authorization": header}
    return {}


def ssl_context(tls: TLSConfig) -> ssl.SSLContext | bool:
    if tls.insecure_skip_verify:
        return False
    return tls_context(tls.ca_file, tls.cert_file, tls.key_file)
