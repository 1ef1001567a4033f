"""The message bus: topology, signed envelope, robust connection, publisher, consumer."""
from shared.bus.connection import connect, connect_once, current_node, is_connected, nodes_of, ping
from shared.bus.consumer import Consumer, Handler, to_bus_message
from shared.bus.message import (
    PRODUCER_HEADER, SIGNATURE_HEADER, BusMessage, ForgedMessage, Reject, canonical_bytes,
    sign_headers, signed_routing_key, verify,
)
from shared.bus.parked import SealTo
from shared.bus.publisher import Publisher, PublishFailed, Unroutable
from shared.bus.topology import (
    ALERTS, DEAD_LETTER, DEFAULT_PARKING_TTL_S, ESCALATION_EVENTS, EVENTS, INTAKE_SUBMISSIONS, NOTIFIER_REQUESTS,
    OPS_ALERTS, OPS_EVENTS, RETRY_DELAYS_S, SUBMISSIONS, QueueSpec, all_queues, control_room_queue,
    control_room_routing_key, declare_exchanges, declare_queue, declare_topology,
    queue_arguments, queue_spec, retry_queue_for, retry_queue_name,
)

__all__ = [
    "ALERTS", "DEAD_LETTER", "DEFAULT_PARKING_TTL_S", "ESCALATION_EVENTS", "EVENTS", "INTAKE_SUBMISSIONS",
    "NOTIFIER_REQUESTS", "OPS_ALERTS", "OPS_EVENTS", "PRODUCER_HEADER", "RETRY_DELAYS_S", "SIGNATURE_HEADER",
    "SUBMISSIONS", "BusMessage", "Consumer", "ForgedMessage", "Handler", "PublishFailed",
    "Publisher", "QueueSpec", "Reject", "SealTo", "Unroutable", "all_queues", "canonical_bytes", "connect",
    "connect_once", "current_node",
    "control_room_queue", "control_room_routing_key", "declare_exchanges", "declare_queue",
    "declare_topology", "is_connected", "nodes_of", "ping", "queue_arguments", "queue_spec", "retry_queue_for",
    "retry_queue_name", "sign_headers", "signed_routing_key", "to_bus_message", "verify",
]
