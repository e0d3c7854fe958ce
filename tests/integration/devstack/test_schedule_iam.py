"""The schedule RPCs under the edge's task role from the REAL synthesized template: every
DynamoDB call they make (TransactWriteItems is judged as its Put/Update/Delete parts,
docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html) must
be allowed, or the call would answer UNAVAILABLE here as it would in AWS."""

from __future__ import annotations

from pathlib import Path

from google.protobuf.field_mask_pb2 import FieldMask

from grpc_edge.clients import Clients
from reportgrid.local.bootstrap import RegionResources
from reportgrid.local.iam.enforce import enforcing
from reportgrid.settings import Settings
from reportgrid.v1 import reports_pb2 as pb
from tests.integration.edge.conftest import put_api_key, running_edge, synthetic_request


async def test_every_schedule_rpc_is_allowed_by_the_edge_role(
    aws: RegionResources, assembly: Path, settings: Settings
) -> None:
    key = put_api_key(aws, "acme")  # as the operator: before the edge's role applies
    with enforcing(assembly, region=aws.region, container="edge"):
        clients = await Clients.open(settings)  # created under the hook, as in the task
        try:
            async with running_edge(settings, key, clients=clients) as edge:
                stub, auth = edge.stub, edge.auth()
                created = await stub.CreateSchedule(
                    pb.CreateScheduleRequest(
                        schedule=pb.Schedule(expression="rate(1 day)", template=synthetic_request())
                    ),
                    metadata=auth,
                )
                sid = created.schedule_id
                await stub.GetSchedule(pb.GetScheduleRequest(schedule_id=sid), metadata=auth)
                listed = await stub.ListSchedules(pb.ListSchedulesRequest(), metadata=auth)
                assert [s.schedule_id for s in listed.schedules] == [sid]
                await stub.UpdateSchedule(
                    pb.UpdateScheduleRequest(
                        schedule=pb.Schedule(schedule_id=sid, description="iam"),
                        update_mask=FieldMask(paths=["description"]),
                    ),
                    metadata=auth,
                )
                await stub.PauseSchedule(pb.PauseScheduleRequest(schedule_id=sid), metadata=auth)
                await stub.ResumeSchedule(pb.ResumeScheduleRequest(schedule_id=sid), metadata=auth)
                await stub.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id=sid), metadata=auth)
        finally:
            await clients.close()
