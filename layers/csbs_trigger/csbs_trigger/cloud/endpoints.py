"""Where a cloud service answers: the secret's ``<service>_endpoint``, else its ``region``'s
public endpoint, else (password credentials) the token's catalog.

Each backup service names itself once (``Service``); nothing here knows which ones exist.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import field

from csbs_trigger.errors import ConfigError
from csbs_trigger.values import frozen

# Open Telekom Cloud regions and their domain; every other region name is Huawei Cloud's.
_OTC_REGION_DOMAINS = {"eu-de": "otc.t-systems.com", "eu-nl": "otc.t-systems.com",
                       "eu-ch2": "sc.otc.t-systems.com"}  # fmt: skip
_HUAWEI_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,3}")


@frozen
class Service:
    """A cloud API: its host's first label and the secret's ``<name>_endpoint`` key, how
    messages name it, the version segment of its paths and its types in the IAM catalog."""

    name: str
    label: str
    api_version: str
    catalog_types: frozenset[str]

    @property
    def endpoint_key(self) -> str:
        return f"{self.name}_endpoint"


def is_known_region(region: str) -> bool:
    return region in _OTC_REGION_DOMAINS or _HUAWEI_REGION.fullmatch(region) is not None


def endpoint_for_region(service: Service, region: str) -> str:
    """The service's public endpoint in a region of Open Telekom Cloud or Huawei Cloud."""
    if region in _OTC_REGION_DOMAINS:
        return f"https://{service.name}.{region}.{_OTC_REGION_DOMAINS[region]}"
    if _HUAWEI_REGION.fullmatch(region):
        return f"https://{service.name}.{region}.myhuaweicloud.com"
    raise ConfigError(
        f"the cloud secret key region names no known cloud region; set {service.endpoint_key}"
    )


@frozen
class Endpoints:
    """What the secret says about endpoints: explicit URLs by key, and the region."""

    configured: Mapping[str, str] = field(default_factory=dict)  # "csbs_endpoint": URL
    region: str | None = None

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.configured.items())), self.region))

    def complete(self, service: Service) -> bool:
        """Whether ``service`` is found without a catalog."""
        return service.endpoint_key in self.configured or self.region is not None

    def of(self, service: Service, catalog: Mapping[str, str] | None = None) -> str:
        """The base URL of ``service`` (no version, no project), or ``config_error``."""
        configured = self.configured.get(service.endpoint_key)
        if configured is not None:
            return configured
        if self.region is not None:
            return endpoint_for_region(service, self.region)
        for catalog_type in sorted(service.catalog_types):
            if catalog and catalog_type in catalog:
                return catalog[catalog_type]
        where = " and the token's catalog lists none" if catalog is not None else ""
        raise ConfigError(
            f"the cloud secret has no {service.endpoint_key} (or region){where}: "
            f"{service.label} cannot be reached"
        )


def catalog_endpoints(catalog: object, project_id: str) -> dict[str, str]:
    """The public endpoints a token's catalog lists, by type, as base URLs: the catalog writes
    ``https://cbr.<region>.../v3/<project_id>``, and requests add version and project again."""
    found: dict[str, str] = {}
    for service in catalog if isinstance(catalog, list) else []:
        kind = service.get("type") if isinstance(service, dict) else None
        if not isinstance(kind, str) or kind in found:
            continue
        for endpoint in service.get("endpoints") or []:
            url = endpoint.get("url") if isinstance(endpoint, dict) else None
            if isinstance(url, str) and endpoint.get("interface", "public") == "public":
                base = url.rstrip("/").removesuffix(f"/{project_id}")
                found[kind] = re.sub(r"/v[0-9]+(\.[0-9]+)?$", "", base)
                break
    return found
