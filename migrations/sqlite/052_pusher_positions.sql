-- loom schema 52: how far each pusher's notifications went. Notifications at
-- or before last_stream_ordering were delivered to the push gateway (or given
-- up); at start loom sends each http pusher those after it (schema 51) that
-- are not too old, so a restart loses none. A pusher set anew starts at the
-- stream's end: it is not sent older notifications. NULL (pushers set before
-- this schema): nothing is sent again.
ALTER TABLE pushers ADD COLUMN last_stream_ordering INTEGER;
