"""What the cluster endpoints accept and return. Credentials go in sealed and never come back out."""

import ipaddress
import re
import uuid
from typing import Annotated
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from kepler_kit.names import NamespaceName
from kepler_kit.pagination import Page
from kepler_kit.scalars import JsonBool
from kepler_kit.text import Multiline, Secret, SingleLine

_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)


def _dialable(url: SplitResult) -> bool:
    try:
        host, _ = url.hostname, url.port  # .port raises on a port out of range or not a number
    except ValueError:
        return False
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:  # a name, then: not all digits (`0`, `10.1`), which clients read as bad IPv4
        return bool(_DNS_NAME.match(host)) and not host.replace(".", "").isdigit()


Pem = Annotated[
    str,
    # ASCII only (RFC 7468): the TLS library refuses anything else with a TypeError, not an SSL error
    StringConstraints(
        max_length=16384, pattern=r"^-----BEGIN [A-Z ]+-----[\t\n\r -~]+-----END [A-Z ]+-----\s*$"
    ),
    Multiline,
]


class ClusterCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NamespaceName
    api_url: (
        Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s/]+(/\S*)?$"), SingleLine]
        | None
    ) = None
    in_cluster: JsonBool = Field(False, description="Use the service account Kepler itself runs under")
    ca_data: Pem | None = None
    insecure_skip_tls_verify: JsonBool = False
    token: Secret | None = Field(None, max_length=8192)
    client_cert: Pem | None = None
    client_key: Secret | None = Field(None, max_length=16384)

    @field_validator("api_url")
    @classmethod
    def _reachable_host(cls, url: str | None) -> str | None:
        """A host a client can dial: an IP address or a DNS name (`http://0` is neither, and would
        fail every call to the cluster instead of its registration). Nothing else a client would refuse
        or misread: credentials (shown back in every listing, and aiohttp refuses them next to a token),
        a query or fragment, a `%` that is not an escape."""
        if url is None:
            return url
        if "@" in urlsplit(url).netloc:
            raise ValueError("must not carry credentials: give a `token` or a client certificate")
        if "?" in url or "#" in url:
            raise ValueError("must not have a query or a fragment")
        if _BAD_ESCAPE.search(url):
            raise ValueError("has a `%` that is not followed by two hex digits")
        if not _dialable(urlsplit(url)):
            raise ValueError("must name the API server by a DNS name or an IP address, with a valid port")
        return url

    @field_validator("token")
    @classmethod
    def _bearer_token(cls, token: SecretStr | None) -> SecretStr | None:
        """RFC 6750's b64token: anything else would break the Authorization header of every call."""
        if token is not None and not _B64TOKEN.match(token.get_secret_value()):
            raise ValueError("must be a bearer token (letters, digits and -._~+/, then optional =)")
        return token

    @model_validator(mode="after")
    def _one_way_in(self) -> "ClusterCreate":
        if self.in_cluster == bool(self.api_url):
            raise ValueError(
                "give either `api_url` (with a token or a client certificate) or `in_cluster: true`"
            )
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("a client certificate needs its key, and the other way round")
        return self


class Cluster(BaseModel):
    id: uuid.UUID
    name: str
    api_url: str | None
    in_cluster: bool
    simulated: bool
    has_token: bool
    has_client_certificate: bool
    reachable: bool | None = Field(
        description="What the last call to it found (false too when its credentials do not load); "
        "null when not called yet"
    )
    detail: str | None


class ClusterPage(Page[Cluster]):
    pass
