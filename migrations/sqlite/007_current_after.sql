-- loom schema 7: the room's current state after each live event (a snapshot
-- NID), so that "the state at a stream position" — what /sync compares a
-- timeline's start against — is exact in rooms whose history forked.
ALTER TABLE events ADD COLUMN current_after INTEGER;
