"""matrix-nio sees typing, receipts and to-device messages from loom
(spec/03-clients/nio_live_spec.lua).

Usage: /usr/bin/python3 nio_live.py BASE_URL
Alice syncs with nio's AsyncClient.sync; Bob types, reads her message and
sends her device a to-device message (twice with the same transaction ID).
Prints one JSON object with what it saw; exits 1 with a message on the first
thing that goes wrong.
"""
import asyncio
import json
import sys

import nio


def need(cond, what):
    if not cond:
        raise SystemExit("nio live scenario failed: " + what)


async def register(base, name):
    c = nio.AsyncClient(base, name)
    r = await c.register(name, name + "-password", "nio-" + name)
    need(isinstance(r, nio.RegisterResponse), "register %s: %r" % (name, r))
    return c


def ephemeral(resp, room_id, cls):
    room = resp.rooms.join.get(room_id)
    return [e for e in (room.ephemeral if room else []) if isinstance(e, cls)]


async def main(base):
    out = {}
    alice = await register(base, "alice")
    bob = await register(base, "bob")
    r = await alice.room_create(name="nio live")
    need(isinstance(r, nio.RoomCreateResponse), "room_create: %r" % (r,))
    room_id = r.room_id
    r = await alice.room_invite(room_id, bob.user_id)
    need(isinstance(r, nio.RoomInviteResponse), "invite: %r" % (r,))
    r = await bob.join(room_id)
    need(isinstance(r, nio.JoinResponse), "join: %r" % (r,))
    r = await alice.sync(timeout=0)
    need(isinstance(r, nio.SyncResponse) and room_id in r.rooms.join, "alice's initial sync: %r" % (r,))

    # typing: an m.typing ephemeral event naming Bob, then one without him
    r = await bob.room_typing(room_id, True, timeout=30000)
    need(isinstance(r, nio.RoomTypingResponse), "room_typing: %r" % (r,))
    r = await alice.sync(timeout=0, since=alice.next_batch)
    typing = ephemeral(r, room_id, nio.TypingNoticeEvent)
    need(typing and typing[-1].users == [bob.user_id], "no typing notice for bob: %r" % (typing,))
    need(alice.rooms[room_id].typing_users == [bob.user_id], "room.typing_users")
    r = await bob.room_typing(room_id, False)
    r = await alice.sync(timeout=0, since=alice.next_batch)
    typing = ephemeral(r, room_id, nio.TypingNoticeEvent)
    need(typing and typing[-1].users == [], "typing did not stop: %r" % (typing,))
    out["typing"] = True

    # receipts: Bob reads Alice's message
    r = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "read me"})
    need(isinstance(r, nio.RoomSendResponse), "room_send: %r" % (r,))
    read_me = r.event_id
    r = await bob.update_receipt_marker(room_id, read_me)
    need(isinstance(r, nio.UpdateReceiptMarkerResponse), "update_receipt_marker: %r" % (r,))
    r = await alice.sync(timeout=0, since=alice.next_batch)
    receipts = [x for e in ephemeral(r, room_id, nio.ReceiptEvent) for x in e.receipts]
    need(any(x.event_id == read_me and x.user_id == bob.user_id and x.receipt_type == "m.read"
             for x in receipts), "no m.read receipt from bob: %r" % (receipts,))
    need(alice.rooms[room_id].read_receipts[bob.user_id].event_id == read_me, "room.read_receipts")
    out["receipt"] = True

    # to-device: the same transaction ID twice delivers one message
    msg = nio.ToDeviceMessage("m.key.verification.cancel", alice.user_id, alice.device_id,
                              {"transaction_id": "nio-t1", "code": "m.user", "reason": "testing"})
    for _ in range(2):
        r = await bob.to_device(msg, tx_id="td-1")
        need(isinstance(r, nio.ToDeviceResponse), "to_device: %r" % (r,))
    r = await alice.sync(timeout=0, since=alice.next_batch)
    got = [e for e in r.to_device_events if isinstance(e, nio.KeyVerificationCancel)]
    need(len(got) == 1, "expected one to-device message, got %r" % (r.to_device_events,))
    need(got[0].sender == bob.user_id and got[0].transaction_id == "nio-t1", "to-device: %r" % (got[0],))
    r = await alice.sync(timeout=0, since=alice.next_batch)
    need(r.to_device_events == [], "the to-device message came again: %r" % (r.to_device_events,))
    out["to_device"] = True

    await alice.close()
    await bob.close()
    out["ok"] = True
    print(json.dumps(out))


asyncio.run(main(sys.argv[1]))
