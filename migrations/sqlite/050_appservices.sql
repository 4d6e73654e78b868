-- loom schema 50: application services (Application Service API). Each
-- service's delivery position in the event stream and the transaction staged
-- for it: written before it is sent and resent unchanged until the service
-- answers 200, when it goes and the position moves to last_pos.
CREATE TABLE appservice_state (
  service_id  TEXT PRIMARY KEY,
  stream_pos  INTEGER NOT NULL,     -- every event at or before it was delivered (or did not interest it)
  next_txn    INTEGER NOT NULL      -- the ID the next staged transaction takes
) WITHOUT ROWID;

CREATE TABLE appservice_txns (
  service_id  TEXT PRIMARY KEY,     -- one transaction in flight per service
  txn_id      INTEGER NOT NULL,
  body        TEXT NOT NULL,        -- the JSON sent, byte for byte on every attempt
  last_pos    INTEGER NOT NULL,     -- the stream position delivered with it
  acks        TEXT                  -- JSON [[user_id, device_id, upto], ...]: to-device messages it carries,
                                    -- dropped from their inboxes once it is delivered
) WITHOUT ROWID;

-- Rooms a service lists in its third-party network's directory
-- (PUT /directory/list/appservice/{networkId}/{roomId}); /publicRooms shows
-- them for that network (third_party_instance_id) or with
-- include_all_networks.
CREATE TABLE appservice_room_list (
  network_id  TEXT NOT NULL,
  room_id     TEXT NOT NULL,
  service_id  TEXT NOT NULL,
  PRIMARY KEY (network_id, room_id)
) WITHOUT ROWID;
