-- loom.store.directory: local room aliases and the public room directory.
--
--   assert(store:add_alias("#room:example.org", room_id, "@alice:example.org"))
--   store:alias_room("#room:example.org")       -- room_id or nil
--   store:room_aliases(room_id)                  -- { alias, ... }
--   store:set_room_visibility(room_id, "public")
--   store:public_room_ids()                      -- { room_id, ... }
--
-- Mixed into the store. A database failure raises (loom.db.Error).
local directory = {}
local methods = {}
local _ENV = nil -- luacheck: ignore 211

--- The room ID of a local alias, or nil.
function methods:alias_room(alias)
  return self.conn:value("SELECT room_id FROM room_aliases WHERE alias = ?", alias)
end

--- An alias's room ID and creator, or nil when the alias is unknown.
function methods:alias_entry(alias)
  local row = self.conn:first("SELECT room_id, creator FROM room_aliases WHERE alias = ?", alias)
  if not row then return nil end
  return row[1], row[2]
end

--- The local aliases of a room: { alias, ... } (sorted).
function methods:room_aliases(room_id)
  return self.conn:column("SELECT alias FROM room_aliases WHERE room_id = ? ORDER BY alias", room_id)
end

--- Add an alias: true, or nil, message, "alias_taken" when it exists.
function methods:add_alias(alias, room_id, creator)
  local n = self.conn:run("INSERT INTO room_aliases (alias, room_id, creator) VALUES (?, ?, ?)"
    .. " ON CONFLICT (alias) DO NOTHING", alias, room_id, creator)
  if n == 0 then return nil, "room alias " .. alias .. " already exists", "alias_taken" end
  return true
end

--- Remove an alias: true when it existed.
function methods:delete_alias(alias)
  return self.conn:run("DELETE FROM room_aliases WHERE alias = ?", alias) > 0
end

--- Move every local alias of a room to another room (a room upgrade);
-- returns how many moved.
function methods:move_room_aliases(from_room_id, to_room_id)
  return self.conn:run("UPDATE room_aliases SET room_id = ? WHERE room_id = ?", to_room_id, from_room_id)
end

--- A room's directory visibility ("public" / "private"), nil when never set.
function methods:room_visibility(room_id)
  return self.conn:value("SELECT visibility FROM room_directory WHERE room_id = ?", room_id)
end

--- Set a room's directory visibility.
function methods:set_room_visibility(room_id, visibility)
  self.conn:run("INSERT INTO room_directory (room_id, visibility) VALUES (?, ?)"
    .. " ON CONFLICT (room_id) DO UPDATE SET visibility = excluded.visibility", room_id, visibility)
  return true
end

--- The rooms published in the directory: { room_id, ... } (sorted).
function methods:public_room_ids()
  return self.conn:column("SELECT room_id FROM room_directory WHERE visibility = 'public' ORDER BY room_id")
end

directory.methods = methods
return directory
