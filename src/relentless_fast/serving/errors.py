"""Errors with TF Serving's status codes, messages and REST mapping."""

from __future__ import annotations

import grpc

# http_server.cc's mapping of a status code to the REST reply's HTTP status.
_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


class ServingError(Exception):
    """A request failed with a gRPC status code and TF Serving's message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP.get(self.code, 500)

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def not_found(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, msg)


def invalid(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def precondition(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, msg)


def unavailable(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNAVAILABLE, msg)
