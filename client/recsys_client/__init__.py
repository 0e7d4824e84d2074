"""Python client of the travel recommendation service (see :mod:`recsys_client.client`)."""

from recsys_client.answers import Candidate, Destinations, Ranking, Search, Trip
from recsys_client.client import AsyncClient, Client, ClientOptions
from recsys_client.transport import DeadlineExceeded, InvalidRequest, RetryPolicy, ServiceError

__all__ = ["AsyncClient", "Candidate", "Client", "ClientOptions", "DeadlineExceeded", "Destinations",
           "InvalidRequest", "Ranking", "RetryPolicy", "Search", "ServiceError", "Trip"]
