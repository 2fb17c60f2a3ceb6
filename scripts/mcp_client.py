"""Books an appointment through bookingd's /mcp endpoint with the official MCP Python SDK.

Usage: mcp_client.py URL API_KEY MODE   (MODE: auto = the 2026-07-28 era, legacy = the
initialize handshake of 2025-11-25 and before)

Lists the tools, then check_availability -> hold_slot (twice with one idempotency key: one
hold) -> confirm_hold -> get_booking, and checks that a wrong hold id is a tool error. Exits
non-zero on the first thing that is not as it should be.
"""

import asyncio
import datetime
import sys
import uuid

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

EXPECTED_TOOLS = {
    "check_availability",
    "find_available_staff",
    "hold_slot",
    "confirm_hold",
    "create_booking",
    "cancel_booking",
    "reschedule_booking",
    "get_booking",
    "find_customer_bookings",
    "route_incoming_call",
    "find_nearest_branch",
    "list_services",
}
EXPECTED_VERSION = {"auto": "2026-07-28", "legacy": "2025-11-25"}


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def structured(result, what):
    if result.is_error:
        fail(f"{what} failed: {result.content}")
    if not isinstance(result.structured_content, dict):
        fail(f"{what} returned no structured content: {result}")
    return result.structured_content


async def first_free_slot(client, service_id):
    """Polls check_availability until the read models hold the seeded calendars."""
    start = datetime.date.today() + datetime.timedelta(days=2)
    args = {
        "service_id": service_id,
        "start_date": start.isoformat(),
        "end_date": (start + datetime.timedelta(days=13)).isoformat(),
    }
    deadline = asyncio.get_running_loop().time() + 90
    while True:
        answer = structured(await client.call_tool("check_availability", args), "check_availability")
        if answer["available"]:
            return answer["slots"]
        if asyncio.get_running_loop().time() > deadline:
            fail(f"no free slot within 90 s: {answer}")
        await asyncio.sleep(0.5)


async def run(url, key, mode):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        version = client.protocol_version
        if version != EXPECTED_VERSION[mode]:
            fail(f"mode {mode} negotiated {version}, expected {EXPECTED_VERSION[mode]}")

        tools = (await client.list_tools()).tools
        names = {t.name for t in tools}
        if names != EXPECTED_TOOLS:
            fail(f"tools differ: missing {EXPECTED_TOOLS - names}, extra {names - EXPECTED_TOOLS}")
        for tool in tools:
            if tool.output_schema is None or tool.input_schema.get("type") != "object":
                fail(f"{tool.name} lacks an input or output schema")

        services = structured(await client.call_tool("list_services", {}), "list_services")["data"]
        service = next((s for s in services if s["name"] == "Herrenhaarschnitt"), services[0])
        slots = await first_free_slot(client, service["id"])
        # Each era books its own slot: the legacy run comes second and takes a later one.
        slot = slots[0] if mode == "auto" else slots[len(slots) // 2]

        hold_args = {
            "branch_id": slot["branch_id"],
            "service_id": service["id"],
            "staff_id": slot["staff_id"],
            "start": slot["start"],
            "customer": {"phone": "0151 2345678", "name": f"MCP {mode} client"},
            "idempotency_key": str(uuid.uuid4()),
        }
        hold = structured(await client.call_tool("hold_slot", hold_args), "hold_slot")
        again = structured(await client.call_tool("hold_slot", hold_args), "hold_slot (retry)")
        if again["hold_id"] != hold["hold_id"]:
            fail(f"a retried hold_slot made a second hold: {hold['hold_id']} then {again['hold_id']}")
        if hold["booking"]["status"] != "held":
            fail(f"hold_slot answered status {hold['booking']['status']}")

        wrong = await client.call_tool(
            "confirm_hold", {"hold_id": str(uuid.uuid4()), "idempotency_key": str(uuid.uuid4())}
        )
        if not wrong.is_error:
            fail(f"confirming an unknown hold did not fail: {wrong}")

        confirmed = structured(
            await client.call_tool(
                "confirm_hold", {"hold_id": hold["hold_id"], "idempotency_key": str(uuid.uuid4())}
            ),
            "confirm_hold",
        )
        booking = structured(
            await client.call_tool("get_booking", {"booking_id": hold["hold_id"]}), "get_booking"
        )
        if confirmed["status"] != "confirmed" or booking["status"] != "confirmed":
            fail(f"booking not confirmed: {booking}")
        if booking["start"] != hold["booking"]["start"] or booking["source"] != "mcp":
            fail(f"booking differs from the hold: {booking}")
        print(
            f"{mode}: protocol {version}, {len(tools)} tools, booked {booking['id']} "
            f"({booking['confirmation_number']}) at {booking['start']} with staff {booking['staff_id']}"
        )


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in EXPECTED_VERSION:
        fail(__doc__)
    asyncio.run(run(sys.argv[1], sys.argv[2], sys.argv[3]))


if __name__ == "__main__":
    main()
