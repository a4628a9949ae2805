"""Where aisys is and who the agent is: :class:`ClientConfig`.

Built from arguments, or from the environment (prefix ``AISYS_AGENT_``), so a legacy agent can be
pointed at aisys without a code change::

    AISYS_AGENT_URL=https://mainpc:7000 AISYS_AGENT_CLIENT_ID=NLUAgent \\
    AISYS_AGENT_CLIENT_SECRET=... AISYS_AGENT_CA_FILE=/etc/aisys/ca.pem python nlu_agent.py
"""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ClientConfig"]


class ClientConfig(BaseSettings):
    """Connection and identity of one agent.

    Attributes:
        url: the Serve HTTP ingress of any aisys host (``http://host:7000``, or ``https://``
            when the cluster runs with ``ray.tls_certfile``).
        client_id: the agent identity (``aisys token agent ID --scope ...`` creates one).
        client_secret: its secret, shown once when the identity was created.
        scope: space-separated scopes to ask for (a subset of the identity's); None: all.
        ca_file: PEM bundle that signs the server's certificate (the cluster's
            ``ray.tls_ca_file``, or its self-signed ``ray.tls_certfile``); None: system CAs.
        timeout_s: limit of each HTTP call (connect, send, answer).
        refresh_margin_s: refresh the access token this long before it expires.
    """

    model_config = SettingsConfigDict(env_prefix="AISYS_AGENT_", extra="forbid", frozen=True)

    url: str = Field(default="http://127.0.0.1:7000", pattern=r"^https?://[^\s/?#]+/?$")
    client_id: str = Field(min_length=1, max_length=128)
    client_secret: SecretStr = Field(min_length=1, max_length=1024)
    scope: str | None = Field(default=None, max_length=512)
    ca_file: Path | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    refresh_margin_s: float = Field(default=30.0, ge=0, le=3600)

    @field_validator("url")
    @classmethod
    def url_without_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("ca_file")
    @classmethod
    def ca_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"ca_file {value} is not a file; give the PEM bundle of the CA")
        return value

    def verify(self) -> ssl.SSLContext | bool:
        """What the HTTP client checks the server's certificate against."""
        if self.ca_file is None:
            return True
        return ssl.create_default_context(cafile=str(self.ca_file))
