"""The hand-coded health messages are wire-identical to grpc.health.v1's protobuf messages."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from relentless_fast.engine.grpc_service import (
    decode_health_request,
    decode_health_response,
    encode_health_request,
    encode_health_response,
)

F = descriptor_pb2.FieldDescriptorProto


@pytest.fixture(scope="module")
def health() -> tuple[Any, Any]:
    """HealthCheckRequest/Response built from grpc/health/v1/health.proto's definitions."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="rf_test_health.proto", package="grpc.health.v1", syntax="proto3"
    )
    req = fdp.message_type.add(name="HealthCheckRequest")
    req.field.add(name="service", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    resp = fdp.message_type.add(name="HealthCheckResponse")
    enum = resp.enum_type.add(name="ServingStatus")
    for number, name in enumerate(("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")):
        enum.value.add(name=name, number=number)
    resp.field.add(name="status", number=1, type=F.TYPE_ENUM, label=F.LABEL_OPTIONAL,
                   type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus")  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get = message_factory.GetMessageClass
    return (
        get(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")),
        get(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")),
    )


@pytest.mark.parametrize("service", ["", "relentless_fast.v1.FinancialPredictor", "x" * 300])
def test_request_round_trip(health: tuple[Any, Any], service: str) -> None:
    request_cls, _ = health
    wire = request_cls(service=service).SerializeToString()
    assert encode_health_request(service) == wire
    assert decode_health_request(wire) == service


@pytest.mark.parametrize("status", [1, 2, 3])
def test_response_round_trip(health: tuple[Any, Any], status: int) -> None:
    _, response_cls = health
    assert encode_health_response(status) == response_cls(status=status).SerializeToString()
    assert response_cls.FromString(encode_health_response(status)).status == status
    assert decode_health_response(encode_health_response(status)) == status


def test_malformed_requests_are_reported_not_raised() -> None:
    for data in (b"\x0a\x05ab", b"\x0a\xff", b"\x0b"):
        assert not isinstance(decode_health_request(data), str)
