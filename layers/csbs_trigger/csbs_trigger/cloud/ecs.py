"""The ECS API, read only: which servers carry a name ("Listing Details About ECSs",
``GET /v1/{project_id}/cloudservers/detail?name=``), for triggers that name servers by name.

ECS matches ``name`` loosely ("app-01" also finds "app-010" and "my-app-01"): every page of the
matches is read, and only a server named exactly so counts.
"""

from __future__ import annotations

from typing import Any

from csbs_trigger.cloud.api import ApiClient, Call
from csbs_trigger.cloud.checkpoint_items import number_within
from csbs_trigger.cloud.endpoints import Service
from csbs_trigger.cloud.transport import Answer
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import UpstreamError
from csbs_trigger.models import field_text, listed

SERVICE = Service("ecs", "ECS", "v1", frozenset({"ecs"}))
# ECS serves at most 1,000 servers a page; ``offset`` is the page number, from 1.
PAGE_SIZE = 1000
# The loose matches of one name read at most: a project's servers, many times over. A list that
# pages on past them is a ``bad_response``.
MAX_MATCHES = 10_000


class ServerDirectory:
    """Server ids by exact name, in a project (None: the credentials' own)."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def named(self, name: str, project_id: str | None, deadline: Deadline) -> list[str]:
        """The ids of the servers named exactly ``name``: one GET a page of loose matches."""
        exact: list[str] = []
        read = 0
        for page_number in range(1, MAX_MATCHES // PAGE_SIZE + 2):
            query = {"name": name, "limit": str(PAGE_SIZE), "offset": str(page_number)}
            call = Call("GET", "/cloudservers/detail", parse=_servers_page, query=query)
            servers, count = self._api.call(call, deadline, project_id).value
            read += len(servers)
            exact += [server["id"] for server in servers if server.get("name") == name]
            # The count says when every match is read (a server may serve fewer a page than
            # asked); without one, a page short of the limit is the last.
            last = read >= count if count is not None else len(servers) < PAGE_SIZE
            if not servers or last:
                return list(dict.fromkeys(exact))
        raise UpstreamError.bad_response(
            f"ECS listed more pages of servers named like one name than {MAX_MATCHES} fill"
        )


def _servers_page(answer: Answer) -> tuple[list[dict[str, Any]], int | None]:
    """The servers of one page, each with its id, and the count the answer gives."""
    document = answer.json()
    page = []
    for server in listed(document, "servers", "ECS"):
        server_id = field_text(server.get("id"))
        if not server_id:
            raise UpstreamError.bad_response("ECS listed a server without an id")
        page.append({"id": server_id, "name": server.get("name")})
    count = number_within(document.get("count"), low=0)
    return page, None if count is None else int(count)
