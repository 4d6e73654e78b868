-- loom.sync.device_lists: which users' device lists a user should refetch
-- (Client-Server API "Tracking the device list for a user"), for /sync's
-- device_lists and GET /keys/changes.
--
--   local changed, left = device_lists.between(store, user_id, since, to, newly, gone, joiners, leavers)
--     since, to: device-list positions; newly / gone: { [room_id] = true }, the
--     rooms the user joined / left in the range; joiners, leavers (optional):
--     { [user_id] = true }, users who joined / left a room of the user
--     --> sorted arrays of user IDs
--   local newly, gone = device_lists.rooms(store, user_id, from_stream, to_stream)
--
-- changed: users sharing a joined room whose devices or device keys changed
-- in (since, to], the user's own changes, the members of rooms newly
-- joined and those who joined a room of the user; left: members of rooms
-- left, and those who left a room of the user, who share no joined room
-- any more.
local ipairs, pairs, assert = ipairs, pairs, assert
local table_sort = table.sort

local _ENV = nil -- luacheck: ignore 211

local device_lists = {}

--- changed, left (sorted arrays of user IDs); see the top.
function device_lists.between(store, user_id, since, to, newly, gone, joiners, leavers)
  local changed, left = {}, {}
  for u in pairs(joiners or {}) do if u ~= user_id then changed[u] = true end end
  local list = {}
  for u in pairs(store:device_list_changes(since, to)) do list[#list + 1] = u end
  for u in pairs(store:sharing_among(user_id, list)) do changed[u] = true end
  for _, u in ipairs(list) do if u == user_id then changed[u] = true end end
  for room_id in pairs(newly) do
    for _, u in ipairs(store:joined_members(room_id)) do if u ~= user_id then changed[u] = true end end
  end
  local former = {}
  for u in pairs(leavers or {}) do
    if u ~= user_id and not changed[u] then former[#former + 1] = u end
  end
  for room_id in pairs(gone) do
    for _, u in ipairs(store:joined_members(room_id)) do
      if u ~= user_id and not changed[u] then former[#former + 1] = u end
    end
  end
  local still = store:sharing_among(user_id, former)
  for _, u in ipairs(former) do if not still[u] then left[u] = true end end
  local a, b = {}, {}
  for u in pairs(changed) do a[#a + 1] = u end
  for u in pairs(left) do b[#b + 1] = u end
  table_sort(a)
  table_sort(b)
  return a, b
end

--- The rooms the user joined (and is still joined to) and the rooms they
-- left (or were kicked or banned from) between two stream positions:
-- newly, gone ({ [room_id] = true } each).
function device_lists.rooms(store, user_id, from, to)
  local newly, gone = {}, {}
  if from >= to then return newly, gone end
  local last = {}
  for _, c in ipairs(assert(store:membership_changes(user_id, from, to))) do
    last[c.room_id] = c
  end
  for room_id, c in pairs(last) do
    if c.membership == "join" then
      local rn = store:room_nid(room_id)
      if not rn or store:membership_at(user_id, rn, from) ~= "join" then newly[room_id] = true end
    elseif c.membership == "leave" or c.membership == "ban" then
      local rn = store:room_nid(room_id)
      if rn and store:membership_at(user_id, rn, from) == "join" then gone[room_id] = true end
    end
  end
  return newly, gone
end

return device_lists
