"""What the namespace endpoints accept and return."""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kepler_app_service.fields import Description, DisplayName, Strict
from kepler_kit.names import NamespaceName
from kepler_kit.pagination import Page
from kepler_kit.scalars import JsonBool


class NamespaceCreate(Strict):
    name: NamespaceName = Field(description="DNS-1123 label; also the Kubernetes namespace name")
    cluster: NamespaceName | None = Field(
        None, description="The cluster it runs on (default: the platform's)"
    )
    display_name: DisplayName = ""
    description: Description = ""


class NamespaceUpdate(Strict):
    display_name: DisplayName | None = None
    description: Description | None = None
    allow_exec: JsonBool | None = Field(None, description="Whether developers may open terminals into pods")
    require_deploy_approval: JsonBool | None = Field(
        None, description="Whether deploys wait for a maintainer"
    )


class NamespaceCluster(BaseModel):
    name: str
    reachable: bool | None = Field(
        description="False when its last call failed or its credentials do not load; null when not called yet"
    )
    detail: str | None


class Namespace(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    display_name: str
    description: str
    status: Literal["provisioning", "active", "failed"]
    allow_exec: bool
    require_deploy_approval: bool
    created_at: datetime
    updated_at: datetime
    cluster: NamespaceCluster | None = Field(
        None, description="Where it runs and what Kepler last found there; given when one namespace is read"
    )


class NamespacePage(Page[Namespace]):
    pass
